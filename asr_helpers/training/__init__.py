"""Training wing: a config in, a trained, self-describing checkpoint out.

``config`` (every setting), ``loaders`` (corpus -> manifests -> tokenizer -> loaders), ``trainer``
(the loop), ``run`` (train/launch), ``distributed``, ``schedule``, ``evaluation``, ``tracking``
(wandb + plain files), ``checkpoint`` (safe save/load), ``export``, ``rundir`` (every run-folder
file name) and ``sanity`` (the one-batch overfit test).

May import: the base modules, ``data``, ``decoding`` and ``models``.
"""

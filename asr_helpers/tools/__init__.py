"""Tools wing: the entry points.

``cli`` (``python -m asr_helpers``), ``notebooks`` (run the notebooks headless), ``bench`` (the
benchmark command; transcribe and augmentation throughput), ``bench_train`` (training throughput
through the Trainer's own step, any registered model), ``bench_data`` and ``bench_decode`` (loader
and decoder throughput), ``gpu_check`` and ``gpu_plan`` (the prepared GPU check and the Kaggle week
plan), ``install`` (requirements without breaking Kaggle/Colab's torch).

May import: every wing.
"""

"""Tools wing: the entry points.

``cli`` (``python -m asr_helpers``), ``notebooks`` (run the notebooks headless), ``bench`` and
``bench_decode`` (throughput benchmarks), ``gpu_check`` and ``gpu_plan`` (the prepared GPU check and
the Kaggle week plan), ``install`` (requirements without breaking Kaggle/Colab's torch).

May import: every wing.
"""

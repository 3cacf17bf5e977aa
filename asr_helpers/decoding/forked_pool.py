"""Worker processes for an LM decoder, forked once after it has loaded its language model.

Forked workers share the parent's LM pages instead of loading or pickling it (KenLM models
cannot be pickled), and later calls, such as each cell of an alpha/beta grid, pay no start-up.
Any decoder with ``params`` (its current alpha and beta), ``set_params(alpha, beta)`` and
``decode_prepared(matrix)`` can use it: ``ctc.LMDecoder`` (pyctcdecode) and
``flashlight_lm.FlashlightLMDecoder`` do. Each task carries the decoder's current weights, so a
``set_params`` in the parent reaches the workers with their next task.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from typing import Sequence

import numpy as np

_adopted: dict = {}  # per worker process: the decoder it inherited through fork


class ForkedPool:
    """A lazily forked ``multiprocessing`` pool of one size, rebuilt when another size is asked for."""

    def __init__(self) -> None:
        self._pool: multiprocessing.pool.Pool | None = None
        self._size = 0

    def decode(self, decoder, matrices: Sequence[np.ndarray], size: int) -> list[str]:
        """``decoder.decode_prepared`` of each matrix, on ``size`` workers forked from this process (in this
        process when one worker would do: ``size`` 1, or a single matrix)."""
        if min(size, len(matrices)) <= 1:
            return [decoder.decode_prepared(matrix) for matrix in matrices]
        if self._pool is None or self._size != size:
            self.close()
            self._pool = multiprocessing.get_context("fork").Pool(size, initializer=_adopt, initargs=(decoder,))
            self._size = size
        return self._pool.map(_decode, [(decoder.params, matrix) for matrix in matrices])

    def close(self) -> None:
        """Stop the workers (a later ``decode`` forks new ones)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool, self._size = None, 0


def _adopt(decoder) -> None:
    """Pool initializer: keep the forked copy of the parent's decoder (never pickled: fork inherits it)."""
    _adopted["decoder"] = decoder


def _decode(task: tuple[tuple[float, float], np.ndarray]) -> str:
    params, matrix = task
    decoder = _adopted["decoder"]
    if decoder.params != params:
        decoder.set_params(*params)
    return decoder.decode_prepared(matrix)

"""Debian's free text-to-speech voices (flite, festival, espeak-ng) as 16 kHz mono float32.

Each engine is driven through its command-line program, so nothing here links against
them. Rate and pitch are varied per utterance with the engine's own controls where it has
them (flite's ``duration_stretch``/``int_f0_target_mean``, festival's ``Duration_Stretch`` or
the HTS speed rate, espeak-ng's ``-s``/``-p``); voices without a pitch control are pitch
shifted by resampling (which also moves the formants a little, like a different speaker).
Festival loads slowly, so one festival process renders a whole batch of sentences.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000
ENGINES = ("flite", "festival", "espeak-ng")
_TIMEOUT_S = 60.0
_ESPEAK_WPM = 175
_ESPEAK_PITCH = 50
_ROLLOFF = 0.95          # resampler pass band, as a fraction of the lower Nyquist frequency
_ZERO_CROSSINGS = 16     # resampler filter length, in zero crossings either side
_KAISER_BETA = 8.6       # resampler window: about 80 dB stop-band attenuation


@dataclass(frozen=True)
class Voice:
    """One engine voice.

    ``source`` names the recorded person behind it ('' for formant synthesis), ``package`` the
    apt package that provides it, and ``f0`` a flite voice's mean pitch for its
    ``int_f0_target_mean`` control (None where the voice ignores it: pitch by resampling).
    """

    name: str
    engine: str
    voice: str
    sex: str
    source: str
    package: str
    f0: float | None = None


@dataclass(frozen=True)
class Prosody:
    """Per-utterance delivery: ``rate`` > 1 speaks slower, ``pitch`` multiplies the F0."""

    rate: float = 1.0
    pitch: float = 1.0


def _run(cmd: list[str], timeout: float = _TIMEOUT_S) -> str | None:
    """None on success, else a one-line reason (exit status and the end of stderr)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{cmd[0]} timed out after {timeout:.0f} s"
    except OSError as error:
        return f"{cmd[0]} could not start ({error})"
    if done.returncode != 0:
        tail = " ".join(done.stderr.split())[-200:]
        return f"{cmd[0]} exited {done.returncode}: {tail}"
    return None


def _stdout(cmd: list[str]) -> str:
    """What a listing command prints; '' when it fails, so the voices count as unavailable."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _listed_voices(engine: str) -> set[str] | None:
    """Voice names the installed engine offers, or None when the engine is not installed."""
    if shutil.which(engine) is None:
        return None
    if engine == "flite":
        return set(_stdout(["flite", "-lv"]).partition(":")[2].split())
    if engine == "festival":
        return set(_stdout(["festival", "-b", "(print (voice.list))"]).strip("()\n ").split())
    found = set()
    for kind in ("en", "variant"):
        for row in _stdout(["espeak-ng", f"--voices={kind}"]).splitlines()[1:]:
            cols = row.split()
            if len(cols) >= 5:
                found.add(cols[1] if kind == "en" else "+" + cols[4].rpartition("/")[2])
    return found


def _is_listed(voice: Voice, listed: set[str]) -> bool:
    if voice.engine != "espeak-ng":
        return voice.voice in listed
    language, _, variant = voice.voice.partition("+")
    return language in listed and (not variant or f"+{variant}" in listed)


def unavailable(voices: list[Voice]) -> dict[str, str]:
    """Voice name -> why it cannot be rendered here, naming the apt package that provides it."""
    listed = {engine: _listed_voices(engine) for engine in {v.engine for v in voices}}
    missing = {}
    for voice in voices:
        names = listed[voice.engine]
        if names is None:
            missing[voice.name] = f"{voice.engine} is not installed (apt-get install {voice.package})"
        elif not _is_listed(voice, names):
            missing[voice.name] = f"{voice.engine} has no voice {voice.voice} (apt-get install {voice.package})"
    return missing


def _sinc_taps(orig: int, new: int, up: int, down: int) -> tuple[np.ndarray, int]:
    """Per-phase taps of a Kaiser-windowed sinc low-pass at the lower Nyquist, and the half width."""
    cutoff = _ROLLOFF * min(orig, new)                      # two-sided band edge in Hz
    half = int(np.ceil(_ZERO_CROSSINGS * orig / cutoff))   # input samples either side
    offsets = np.arange(-half + 1, half + 1)
    frac = (np.arange(up) * down % up) / up
    t = (offsets[None, :] - frac[:, None]) / orig            # seconds from each tap to the output instant
    reach = _ZERO_CROSSINGS / cutoff
    window = np.i0(_KAISER_BETA * np.sqrt(np.clip(1 - (t / reach) ** 2, 0, None))) / np.i0(_KAISER_BETA)
    return (cutoff / orig * np.sinc(cutoff * t) * window).astype(np.float32), half


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Polyphase windowed-sinc resampling in numpy (about 80 dB stop band)."""
    g = math.gcd(orig, new)
    up, down = new // g, orig // g
    taps, half = _sinc_taps(orig, new, up, down)
    padded = np.pad(wave.astype(np.float32), (half, half + down + 1))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half)
    out = np.empty(-(-len(wave) * up // down), dtype=np.float32)
    for phase in range(min(up, len(out))):
        starts = np.arange(phase, len(out), up) * down // up   # first input sample of each window
        out[phase::up] = windows[starts + 1] @ taps[phase]
    return out


def to_sample_rate(wave: np.ndarray, rate: int, pitch: float = 1.0) -> np.ndarray:
    """Resample to 16 kHz; ``pitch`` != 1 plays it faster/higher.

    The source is read as if recorded at ``rate * pitch`` (rounded to 100 Hz so the polyphase
    filter stays small), which raises pitch and tempo together like a tape played fast.
    """
    source_rate = int(round(rate * pitch / 100.0)) * 100
    if source_rate == SAMPLE_RATE:
        return wave.astype(np.float32)
    return resample(wave, source_rate, SAMPLE_RATE)


def _read(path: Path, pitch: float) -> np.ndarray | str:
    """The engine's wav at 16 kHz, or the reason it is unusable."""
    if not path.exists():
        return "engine wrote no audio"
    try:
        wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        return f"unreadable engine output ({error})"
    if wave.shape[0] == 0:
        return "engine wrote an empty wav"
    return to_sample_rate(wave.mean(axis=1), rate, pitch)


def _flite(voice: Voice, text: str, prosody: Prosody, wav: Path) -> str | None:
    cmd = ["flite", "-voice", voice.voice, "--setf", f"duration_stretch={prosody.rate:.3f}"]
    if voice.f0 is not None:
        cmd += ["--setf", f"int_f0_target_mean={voice.f0 * prosody.pitch:.1f}"]
    return _run(cmd + ["-t", text, "-o", str(wav)])


def _espeak(voice: Voice, text: str, prosody: Prosody, wav: Path) -> str | None:
    speed = round(_ESPEAK_WPM / prosody.rate)
    pitch = min(99, max(0, round(_ESPEAK_PITCH + 100 * (prosody.pitch - 1))))
    return _run(["espeak-ng", "-v", voice.voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text])


def _festival_script(voice: Voice, jobs: list[tuple[str, Prosody, Path]]) -> str:
    """One scheme program rendering every job; a sentence that fails is skipped and the rest go on."""
    lines = [f"(voice_{voice.voice})",
             "(set! base_stretch (or (Parameter.get 'Duration_Stretch) 1.0))",
             "(set! base_hts (if (symbol-bound? 'hts_engine_params) hts_engine_params nil))"]
    for text, prosody, wav in jobs:
        quoted = text.replace("\\", " ").replace('"', " ")
        lines.append(
            "(unwind-protect (begin"
            f" (Parameter.set 'Duration_Stretch (* base_stretch {prosody.rate:.3f}))"
            f" (set! hts_engine_params (append base_hts (list (list \"-r\" {1 / prosody.rate:.3f}))))"
            f" (utt.save.wave (SynthText \"{quoted}\") \"{wav}\" 'riff))"
            f" (format t \"failed {wav.name}\\n\"))")
    return "\n".join(lines) + "\n"


def _pitch_by_resampling(voice: Voice) -> bool:
    """Festival voices and flite voices that ignore ``int_f0_target_mean`` (rms) have no pitch control."""
    return voice.engine == "festival" or (voice.engine == "flite" and voice.f0 is None)


def render(voice: Voice, texts: list[str], prosodies: list[Prosody], workdir: Path) -> list[np.ndarray | str]:
    """Speak each text; per text a 16 kHz float32 wave, or a reason string when it failed."""
    wavs = [Path(workdir) / f"{i:05d}.wav" for i in range(len(texts))]
    pitches = [p.pitch if _pitch_by_resampling(voice) else 1.0 for p in prosodies]
    if voice.engine == "festival":
        script = Path(workdir) / "render.scm"
        script.write_text(_festival_script(voice, list(zip(texts, prosodies, wavs))), encoding="utf-8")
        failure = _run(["festival", "-b", str(script)], timeout=_TIMEOUT_S + 10.0 * len(texts))
        return [_read(w, p) if w.exists() or failure is None else failure for w, p in zip(wavs, pitches)]
    speak = {"flite": _flite, "espeak-ng": _espeak}.get(voice.engine)
    if speak is None:
        raise ValueError(f"unknown engine {voice.engine!r}; choose from {ENGINES}")
    results: list[np.ndarray | str] = []
    for text, prosody, wav, pitch in zip(texts, prosodies, wavs, pitches):
        failure = speak(voice, text, prosody, wav)
        results.append(failure if failure else _read(wav, pitch))
    return results

"""Sound for the simulated callee and the fake speech services: 16-bit mono PCM.

Speech is espeak-ng's (a Debian package), resampled to the call's rate; tones
stand in for a mailbox beep; the fake TTS's "voice" is a quiet vowel-like
tone as long as the text would take to say. ``has_speech`` is the fake
STT's test: energy over the noise floor, never a flag.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave

import numpy as np
import soxr

SAMPLE_WIDTH = 2


class SpeechUnavailable(RuntimeError):
    """espeak-ng is not installed (``make test`` installs it with apt-get)."""


def silence(seconds: float, rate: int) -> bytes:
    return bytes(int(rate * max(0.0, seconds)) * SAMPLE_WIDTH)


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.int16).tobytes()


def read_wav(data: bytes) -> tuple[bytes, int]:
    """``(mono 16-bit PCM, rate)`` of a WAV file's bytes (stereo is mixed down)."""
    with wave.open(io.BytesIO(data)) as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        frames = w.readframes(w.getnframes())
    if width != SAMPLE_WIDTH:
        raise ValueError(f"only 16-bit WAV files are supported (this one has {8 * width}-bit samples)")
    if channels > 1:
        samples = np.frombuffer(frames, dtype=np.int16).reshape(-1, channels).mean(axis=1)
        frames = samples.astype(np.int16).tobytes()
    return frames, rate


def load_wav(path: str, rate: int) -> bytes:
    with open(path, "rb") as f:
        pcm, source_rate = read_wav(f.read())
    return resample(pcm, source_rate, rate)


@functools.lru_cache(maxsize=256)
def _espeak(text: str, voice: str, words_per_minute: int) -> tuple[bytes, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechUnavailable("espeak-ng is not installed: apt-get install espeak-ng (make test does)")
    done = subprocess.run(
        [exe, "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        capture_output=True, check=True, timeout=30,
    )
    return read_wav(done.stdout)


def speak(text: str, rate: int, *, voice: str = "en-us", words_per_minute: int = 170) -> bytes:
    """``text`` spoken by espeak-ng, at ``rate``."""
    pcm, source_rate = _espeak(text, voice, words_per_minute)
    return resample(pcm, source_rate, rate)


def tone(seconds: float, rate: int, *, hz: float = 1000.0, level: float = 0.3) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype(np.int16).tobytes()


def voice_like(seconds: float, rate: int, *, level: float = 0.2) -> bytes:
    """A vowel-ish buzz with a syllable rhythm: what the fake TTS 'says'."""
    t = np.arange(int(rate * seconds)) / rate
    carrier = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((140, 280, 700, 1200)))
    syllables = 0.7 + 0.3 * np.sin(2 * np.pi * 4.0 * t)
    signal = carrier / 2.1 * syllables * level
    return (signal * 32767).astype(np.int16).tobytes()


def rms_dbfs(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    if samples.size == 0:
        return -120.0
    rms = np.sqrt(np.mean(samples**2)) / 32768.0
    return float(20 * np.log10(max(rms, 1e-6)))


def has_speech(pcm: bytes, rate: int, *, over_floor_db: float = 20.0, min_voiced_s: float = 0.15) -> bool:
    """True when at least ``min_voiced_s`` of 20 ms frames stand ``over_floor_db`` above the quietest ones.

    The floor is the 10th percentile of frame energies, with -70 dBFS as the
    lowest floor (digital silence would otherwise make any hiss "speech").
    """
    frame = max(1, int(rate * 0.02)) * SAMPLE_WIDTH
    energies = [rms_dbfs(pcm[i:i + frame]) for i in range(0, len(pcm) - frame + 1, frame)]
    if not energies:
        return False
    floor = max(float(np.percentile(energies, 10)), -70.0)
    voiced = sum(1 for e in energies if e > floor + over_floor_db)
    return voiced * 0.02 >= min_voiced_s


def first_loud_sample(pcm: bytes, *, threshold_dbfs: float = -50.0, rate: int = 16000) -> int | None:
    """Index (in samples) of the first 10 ms that is louder than ``threshold_dbfs``, or None."""
    step = max(1, int(rate * 0.01)) * SAMPLE_WIDTH
    for i in range(0, len(pcm), step):
        if rms_dbfs(pcm[i:i + step]) > threshold_dbfs:
            return i // SAMPLE_WIDTH
    return None


def to_wav(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def line_noise(seconds: float, rate: int, *, level_dbfs: float = -62.0) -> bytes:
    """Quiet hiss, as an open phone line has (seeded: every run hears the same)."""
    rng = np.random.default_rng(7)
    amplitude = 32768 * 10 ** (level_dbfs / 20)
    return (rng.normal(0, amplitude, int(rate * seconds))).astype(np.int16).tobytes()


def last_loud_sample(pcm: bytes, *, threshold_dbfs: float = -50.0, rate: int = 16000) -> int | None:
    """Index (in samples) just after the last 10 ms that is louder than ``threshold_dbfs``, or None."""
    step = max(1, int(rate * 0.01)) * SAMPLE_WIDTH
    last = None
    for i in range(0, len(pcm), step):
        if rms_dbfs(pcm[i:i + step]) > threshold_dbfs:
            last = (i + step) // SAMPLE_WIDTH
    return last

"""What the machine's CPU can do, for choosing a precision and for naming the machine next to every figure.

bfloat16 pays on CPUs with native bfloat16 dot products (AVX512_BF16, or AMX tiles); elsewhere PyTorch emulates
it and it runs slower than float32. int8 convolutions pay most with VNNI (AVX512_VNNI / AVX_VNNI) or AMX.
"""
import functools
import platform
from pathlib import Path
from typing import Dict, FrozenSet, Tuple

__all__ = ['cpu_flags', 'cpu_name', 'cpu_features', 'describe_cpu', 'cpu_supports_bfloat16']

# flag in /proc/cpuinfo -> the name the docs use
FEATURES = {'avx2': 'AVX2', 'fma': 'FMA', 'avx512f': 'AVX-512', 'avx512_vnni': 'AVX512_VNNI', 'avx_vnni': 'AVX_VNNI',
            'avx512_bf16': 'AVX512_BF16', 'amx_bf16': 'AMX_BF16', 'amx_int8': 'AMX_INT8'}


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> Tuple[str, FrozenSet[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; empty where there is none (macOS, Windows)."""
    path = Path('/proc/cpuinfo')
    name, flags = platform.processor() or platform.machine(), frozenset()
    if path.is_file():
        for line in path.read_text(errors='replace').splitlines():
            key, _, value = line.partition(':')
            if key.strip() == 'model name' and name in ('', platform.machine(), platform.processor()):
                name = value.strip()
            elif key.strip() == 'flags' and not flags:
                flags = frozenset(value.split())
    return name, flags


def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags (lower case, as /proc/cpuinfo lists them)."""
    return _cpuinfo()[1]


def cpu_name() -> str:
    return _cpuinfo()[0]


def cpu_features() -> Dict[str, bool]:
    """Which of the features that decide the fastest precision the CPU has, by their documented names."""
    flags = cpu_flags()
    return {name: flag in flags for flag, name in FEATURES.items()}


def cpu_supports_bfloat16() -> Tuple[bool, str]:
    """Whether bfloat16 runs natively here (AVX512_BF16 or AMX), and why, in words."""
    features = cpu_features()
    native = [name for name in ('AVX512_BF16', 'AMX_BF16') if features[name]]
    if native:
        return True, f'the CPU has {" and ".join(native)}'
    return False, 'the CPU has neither AVX512_BF16 nor AMX, so bfloat16 would be emulated and slower than float32'


def describe_cpu() -> str:
    """The CPU and its relevant features in one line, e.g. ``AMD EPYC (AVX2, FMA; no AVX-512, AVX512_BF16, ...)``."""
    features = cpu_features()
    has = [name for name, present in features.items() if present]
    lacks = [name for name, present in features.items() if not present]
    return f'{cpu_name()} ({", ".join(has) or "no listed features"}' + (f'; no {", ".join(lacks)})' if lacks else ')')

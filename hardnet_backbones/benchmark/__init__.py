"""Side-by-side speed / memory / size measurements of classifiers, detectors and segmenters.

:mod:`.factory` names the models (registry names, variants, suites), :mod:`.measure` times them,
:mod:`.report` writes the tables; ``tools/benchmark.py`` is the command line.
"""
from .factory import SUITES, VARIANTS, build_benchmark_model, modes_for, split_variants, task_of
from .measure import BenchConfig, conv_ceiling_gflops, count_gmacs, measure_model, run_benchmark, run_interleaved
from .report import interleaved_markdown, to_markdown

__all__ = ['BenchConfig', 'SUITES', 'VARIANTS', 'build_benchmark_model', 'task_of', 'split_variants', 'modes_for',
           'measure_model', 'run_benchmark', 'run_interleaved', 'conv_ceiling_gflops', 'count_gmacs', 'to_markdown',
           'interleaved_markdown']

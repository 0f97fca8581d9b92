"""Markdown tables of benchmark results, with the setting in the caption."""
from typing import Any, Dict, Optional, Sequence

from .measure import BenchConfig

__all__ = ['to_markdown', 'interleaved_markdown', 'op_shares_cell']


def to_markdown(rows: Sequence[Dict[str, Any]], cfg: BenchConfig, title: str = '') -> str:
    """A Markdown table of the rows, with the setting in the caption."""
    memory = ('CUDA max allocated' if cfg.device.startswith('cuda') else
              'peak RSS of the process; step mem = peak RSS added by the timed steps')
    batches = f'batch {cfg.batch_size}'
    if cfg.train and cfg.train_batch_size:
        batches += f' (training {cfg.train_batch_size})'
    caption = (f'{title}device {cfg.device}, {batches}, {cfg.image_size[0]}x{cfg.image_size[1]}, '
               f'{cfg.dtype}, channels_last={cfg.channels_last}, compile={cfg.compile}, fuse={cfg.fuse}; '
               f'median of {cfg.iters} runs after {cfg.warmup} warm-up; memory = {memory}')
    columns = [('model', 'model'), ('baseline', 'baseline'), ('params_m', 'params (M)'), ('gmacs', 'GMACs'),
               ('infer_images_per_s', 'infer img/s'), ('infer_latency_ms_median', 'latency ms (median)'),
               ('infer_latency_ms_p90', 'latency ms (p90)'), ('infer_peak_mem_mb', 'infer mem MB'),
               ('infer_speedup', 'infer x baseline')]
    if cfg.train:
        columns += [('train_images_per_s', 'train img/s'), ('train_peak_mem_mb', 'train mem MB'),
                    ('train_speedup', 'train x baseline')]
        if not cfg.device.startswith('cuda'):
            columns += [('train_step_mem_mb', 'train step mem MB'), ('train_step_memory_ratio', 'step mem x baseline')]
    lines = [f'*{caption}*', '', '| ' + ' | '.join(c[1] for c in columns) + ' |',
             '|' + '|'.join('---' if i < 2 else '---:' for i in range(len(columns))) + '|']
    lines[2] += ' conv / cat / elementwise / other % |'
    lines[3] += '---|'
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            cells.append(f'{value:.2f}' if isinstance(value, float) else str(value if value is not None else ''))
        cells.append(op_shares_cell(row.get('infer_op_share')))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def op_shares_cell(shares: Optional[Dict[str, float]]) -> str:
    """``58 / 26 / 14 / 2``: the inference time per operator class, in percent (empty for onnxruntime models)."""
    if not shares:
        return ''
    return ' / '.join(f'{100 * shares[k]:.0f}' for k in ('convolution', 'concatenation', 'elementwise', 'other'))


def _share(fraction) -> str:
    return f'{fraction:.0%}' if fraction is not None else 'n/a'


def interleaved_markdown(rows: Sequence[Dict[str, Any]], cfg: BenchConfig, title: str = '') -> str:
    """Markdown of :func:`run_interleaved` rows: the machine and its ceilings in the caption, each model's
    fraction of the ceiling of its own precision in the last column."""
    first = rows[0] if rows else {}
    ceilings = {r['precision']: r['ceiling_gflops'] for r in rows}
    named = ', '.join(f'{p} {c:.0f} GFLOP/s' if c else f'{p} not measured' for p, c in ceilings.items())
    caption = (f'{title}{first.get("machine", cfg.device)}; batch {cfg.batch_size}, '
               f'{cfg.image_size[0]}x{cfg.image_size[1]}, {cfg.dtype}, inference; models interleaved in '
               f'{first.get("rounds", 0)} rounds of {cfg.iters} iterations after {cfg.warmup} warm-up; ceilings '
               f'(3x3 convolution, channels_last, same run): {named}')
    header = ('| model | baseline | GMACs | img/s (median) | img/s (min-max) | x baseline (median) | '
              'x baseline (min-max) | GFLOP/s | of its precision\'s ceiling |')
    lines = [f'*{caption}*', '', header, '|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        speed = (f'{r["infer_speedup"]:.2f} | {r["infer_speedup_min"]:.2f}-{r["infer_speedup_max"]:.2f}'
                 if 'infer_speedup' in r else ' | ')
        lines.append(f'| {r["model"]} | {r["baseline"]} | {r["gmacs"]:.2f} | {r["infer_images_per_s"]:.2f} | '
                     f'{r["infer_images_per_s_min"]:.2f}-{r["infer_images_per_s_max"]:.2f} | {speed} | '
                     f'{r["infer_gflops"]:.1f} | {_share(r["ceiling_fraction"])} |')
    return '\n'.join(lines) + '\n'

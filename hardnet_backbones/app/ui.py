"""The page: a tab per task, each a model dropdown, a precision choice, an upload and its results."""
from typing import Any, Dict, List

import gradio as gr
from gradio.context import Context

from ..data.image_io import IMAGE_SUFFIXES
from .loading import PRECISIONS, precisions_for
from .pages import TABLE_HEADERS, Pages

__all__ = ['build_app', 'THEME', 'CSS']

# system fonts: the default theme would fetch Google's fonts, which an offline machine cannot reach
THEME = gr.themes.Default(font=['ui-sans-serif', 'system-ui', 'sans-serif'],
                          font_mono=['ui-monospace', 'monospace'])
CSS = """
.legend { list-style: none; padding: 0; margin: 0; }
.legend-item { display: flex; align-items: center; gap: 0.5em; margin: 0.2em 0; }
.swatch { display: inline-block; width: 1.1em; height: 1.1em; border: 1px solid #888; border-radius: 3px; }
.share { color: #666; margin-left: auto; }
"""
CONCURRENCY = dict(concurrency_id='model', concurrency_limit=1)  # one model at a time, whatever the tab


def _model_inputs(pages: Pages, task: str, device: str) -> List[Any]:
    """The model dropdown and the precision choice of a tab (the precisions follow the model, from the page's
    load on)."""
    labels = pages.labels(task)
    offered = [p for p in PRECISIONS if any(p in precisions_for(c, device) for c in [None, *pages.catalog[task]])]
    model = gr.Dropdown(labels, value=labels[0] if labels else None, label='Model',
                        info=None if labels else 'none found: start the app with --runs DIR',
                        elem_id=f'{task}-model')
    # every precision one of the tab's models runs in (so that API calls may ask for it); the page narrows the
    # choice to the model's own
    precision = gr.Radio(offered, value='float32', label='Precision', elem_id=f'{task}-precision')

    def follow(label: str) -> Dict[str, Any]:
        choice = next((c for c in pages.catalog[task] if c.label == label), None)
        return gr.update(choices=precisions_for(choice, device), value='float32')
    gr.on([model.change, Context.root_block.load], follow, model, precision, queue=False, api_visibility='private')
    return [model, precision]


def _upload(task: str) -> gr.File:
    return gr.File(label='Image', file_types=list(IMAGE_SUFFIXES), type='filepath', elem_id=f'{task}-image')


def _status(task: str) -> gr.Markdown:
    return gr.Markdown(elem_id=f'{task}-status')


def _classify_tab(pages: Pages, device: str) -> None:
    with gr.Row():
        with gr.Column():
            model, precision = _model_inputs(pages, 'classification', device)
            image = _upload('classification')
            button = gr.Button('Classify', variant='primary', elem_id='classification-run')
        with gr.Column():
            top = gr.Label(num_top_classes=5, label='Top 5', elem_id='classification-top')
            shown = gr.Image(label='As classified', type='pil', interactive=False, height=320,
                             elem_id='classification-picture')
            status = _status('classification')
    button.click(pages.classify, [model, precision, image], [shown, top, status], api_name='classify', **CONCURRENCY)


def _detect_tab(pages: Pages, device: str) -> None:
    with gr.Row():
        with gr.Column():
            model, precision = _model_inputs(pages, 'detection', device)
            image = _upload('detection')
            threshold = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label='Score threshold',
                                  elem_id='detection-threshold')
            button = gr.Button('Detect', variant='primary', elem_id='detection-run')
        with gr.Column():
            picture = gr.Image(label='Detections', type='pil', interactive=False, elem_id='detection-picture')
            status = _status('detection')
    table = gr.Dataframe(headers=TABLE_HEADERS, label='Detections', interactive=False, elem_id='detection-table')
    download = gr.File(label='Detections (JSON)', interactive=False, elem_id='detection-json')
    inputs, outputs = [model, precision, image, threshold], [picture, table, download, status]
    button.click(pages.detect, inputs, outputs, api_name='detect', **CONCURRENCY)
    threshold.release(pages.detect, inputs, outputs, api_visibility='private', **CONCURRENCY)


def _segment_tab(pages: Pages, device: str) -> None:
    with gr.Row():
        with gr.Column():
            model, precision = _model_inputs(pages, 'segmentation', device)
            image = _upload('segmentation')
            button = gr.Button('Segment', variant='primary', elem_id='segmentation-run')
        with gr.Column():
            overlay = gr.Image(label='Classes', type='pil', interactive=False, elem_id='segmentation-picture')
            legend = gr.HTML(label='Classes present (share of the pixels)', elem_id='segmentation-legend')
            status = _status('segmentation')
    button.click(pages.segment, [model, precision, image], [overlay, legend, status], api_name='segment',
                 **CONCURRENCY)


def build_app(pages: Pages, device: str = 'cpu') -> gr.Blocks:
    """The app's page over ``pages`` (launch it with :func:`hardnet_backbones.app.main.launch`)."""
    with gr.Blocks(title='HarDNet backbones', analytics_enabled=False) as app:
        gr.Markdown('# HarDNet backbones\nDrop an image, pick a model, run it. Models: the runs under `--runs`, '
                    'the published weights in the cache, and the files given with `--weights`.')
        with gr.Tab('Classify', elem_id='tab-classify'):
            _classify_tab(pages, device)
        with gr.Tab('Detect', elem_id='tab-detect'):
            _detect_tab(pages, device)
        with gr.Tab('Segment', elem_id='tab-segment'):
            _segment_tab(pages, device)
    return app

"""What each tab of the app does with a model choice, a precision and an uploaded file: the same inference and
drawing functions as the tools, with every failure a person can fix reported as one line in the page."""
import html
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..cli.common import USER_ERRORS
from ..data.palettes import color_palette
from ..errors import ConfigError, user_message
from ..inference.classify import top_classes
from ..inference.results import Detections, detections_of, segmentation_of
from ..inference.windows import segment_logits
from ..utils.device import model_device
from ..utils.files import write_text_atomic
from .catalog import ModelChoice
from .loading import LoadedModel, ModelLoader
from .uploads import DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_SIDE, Upload, read_upload

__all__ = ['Pages', 'TABLE_HEADERS', 'DONE', 'REFUSED']

_logger = logging.getLogger('hardnet.app')
TABLE_HEADERS = ['label', 'score', 'x1', 'y1', 'x2', 'y2']
REFUSED = 'Error: '  # how a status line that reports a failure starts (DONE: a result)
DONE = 'Done: '


def _refusal(error: BaseException) -> str:
    return REFUSED + ' '.join(user_message(error).split())  # one line, however the message was wrapped


class Pages:
    """The tabs' functions (``classify``, ``detect``, ``segment``) over a catalog of model choices."""

    def __init__(self, catalog: Dict[str, List[ModelChoice]], loader: ModelLoader,
                 max_side: int = DEFAULT_MAX_SIDE, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS):
        self.catalog = catalog
        self.loader = loader
        self.max_side = max_side
        self.max_megapixels = max_megapixels
        self.out_dir = Path(tempfile.mkdtemp(prefix='hardnet_app_'))
        self._last_detection: Optional[Tuple[Any, torch.Tensor, Dict[str, torch.Tensor], float]] = None

    def labels(self, task: str) -> List[str]:
        return [choice.label for choice in self.catalog[task]]

    def choice(self, task: str, label: Optional[str]) -> ModelChoice:
        """The catalog entry of ``label`` for ``task``.

        Raises:
            ConfigError: none chosen, or not one of the task's (saying what the app offers and how to add models).
        """
        for choice in self.catalog[task]:
            if choice.label == label:
                return choice
        if not self.catalog[task]:
            raise ConfigError(f'no {task} model: start the app with --runs DIR (a folder of tools/train.py runs)'
                              + (' or --weights MODEL=FILE' if task != 'segmentation' else ''))
        raise ConfigError(f'choose a {task} model from the list (not {label!r})')

    def _prepare(self, task: str, label: Optional[str], precision: str, file: Optional[str]
                 ) -> Tuple[ModelChoice, LoadedModel, Upload]:
        choice = self.choice(task, label)
        upload = read_upload(file, self.max_side, self.max_megapixels)  # before loading: a bad file is cheap
        return choice, self.loader.get(choice, precision or 'float32'), upload

    @staticmethod
    def _status(choice: ModelChoice, loaded: LoadedModel, upload: Upload, seconds: float, extra: str = '') -> str:
        parts = [f'{DONE}{choice.model_name}', loaded.precision, f'{seconds * 1000:.0f} ms per image (model only)',
                 f'{upload.image.width}x{upload.image.height} px']
        return ' · '.join(parts + [p for p in (extra, upload.note) if p])

    @staticmethod
    def _guard(run: Callable[[], Tuple], empty: Sequence[Any]) -> Tuple:
        """``run()``, or the empty outputs and one line when it fails; the server keeps serving either way."""
        try:
            return run()
        except USER_ERRORS as e:
            return (*empty, _refusal(e))
        except MemoryError:
            return (*empty, REFUSED + 'out of memory: try a smaller image (start the app with a smaller --max-side)')
        except Exception as e:  # a bug: its traceback goes to the server's log, the page gets one line
            _logger.exception('the app failed on a request')
            return (*empty, f'{REFUSED}internal error ({type(e).__name__}: {" ".join(str(e).split())[:200]}); '
                            f'the server log has the traceback')

    @torch.inference_mode()
    def classify(self, label: Optional[str], precision: str, file: Optional[str], topk: int = 5
                 ) -> Tuple[Optional[Image.Image], Optional[Dict[str, float]], str]:
        """(the image as classified, ``{class: probability}`` of the top ``topk``, status line)."""
        def run():
            choice, loaded, upload = self._prepare('classification', label, precision, file)
            start = time.perf_counter()
            predictions = top_classes(loaded.model, [upload.image], topk, loaded.class_names, loaded.preprocess)[0]
            seconds = time.perf_counter() - start
            top = {p.name: round(p.probability, 6) for p in predictions}
            return upload.image, top, self._status(choice, loaded, upload, seconds)
        return self._guard(run, (None, None))

    def _detections(self, choice: ModelChoice, loaded: LoadedModel, upload: Upload, file: str, precision: str
                    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], float]:
        """The image tensor, the detector's raw output and its time, kept for the last image so that moving the
        threshold slider only redraws."""
        key = (choice.label, precision, file, Path(file).stat().st_mtime_ns)
        if self._last_detection is not None and self._last_detection[0] == key:
            return self._last_detection[1:]
        image = loaded.preprocess(upload.image)
        start = time.perf_counter()
        prediction = loaded.model([image.to(model_device(loaded.model))])[0]
        seconds = time.perf_counter() - start
        self._last_detection = (key, image, {k: v.cpu() for k, v in prediction.items()}, seconds)
        return self._last_detection[1:]

    @torch.inference_mode()
    def detect(self, label: Optional[str], precision: str, file: Optional[str], score_threshold: float = 0.3
               ) -> Tuple[Optional[Image.Image], Optional[List[List[Any]]], Optional[str], str]:
        """(picture with the boxes, table rows (:data:`TABLE_HEADERS`), JSON file of the detections, status)."""
        def run():
            choice, loaded, upload = self._prepare('detection', label, precision, file)
            image, prediction, seconds = self._detections(choice, loaded, upload, file, precision)
            found = detections_of(image, prediction, loaded.class_names, float(score_threshold))
            json_file = self._write_json(upload, choice, loaded, found, float(score_threshold))
            rows = [[r['label'], round(r['score'], 3), *(round(c, 1) for c in r['box'])] for r in found.rows]
            status = self._status(choice, loaded, upload, seconds,
                                  f'{len(rows)} detection(s) scoring {score_threshold:.2f} or more')
            return found.picture, rows, str(json_file), status
        return self._guard(run, (None, None, None))

    def _write_json(self, upload: Upload, choice: ModelChoice, loaded: LoadedModel, found: Detections,
                    score_threshold: float) -> Path:
        path = self.out_dir / f'{Path(upload.name).stem}_detections.json'
        write_text_atomic(path, json.dumps(dict(
            image=upload.name, width=upload.image.width, height=upload.image.height, note=upload.note,
            model=choice.label, precision=loaded.precision, score_threshold=score_threshold,
            detections=found.rows), indent=2))
        return path

    @torch.inference_mode()
    def segment(self, label: Optional[str], precision: str, file: Optional[str]
                ) -> Tuple[Optional[Image.Image], Optional[str], str]:
        """(the classes blended over the image, an HTML legend of the classes present with their pixel share,
        status)."""
        def run():
            choice, loaded, upload = self._prepare('segmentation', label, precision, file)
            image = loaded.preprocess(upload.image).to(model_device(loaded.model))
            start = time.perf_counter()
            logits = segment_logits(loaded.model, image, 'whole')
            seconds = time.perf_counter() - start
            result = segmentation_of(np.asarray(upload.image), logits, loaded.class_names, loaded.ignore_index)
            legend = _legend(result.largest(), loaded.class_names)
            return result.overlay, legend, self._status(choice, loaded, upload, seconds)
        return self._guard(run, (None, None))


def _legend(shares: Sequence[Tuple[str, float]], class_names: Sequence[str]) -> str:
    """The classes present as colour swatches (the overlay's colours) with their share of the pixels."""
    palette = dict(zip(class_names, color_palette(list(class_names))))
    items = []
    for name, share in shares:
        color = 'transparent' if name == 'background' else 'rgb({},{},{})'.format(*palette[name])
        items.append(f'<li class="legend-item"><span class="swatch" style="background:{color}"></span>'
                     f'<span class="name">{html.escape(name)}</span> <span class="share">{share:.1%}</span></li>')
    return '<ul class="legend">' + ''.join(items) + '</ul>'

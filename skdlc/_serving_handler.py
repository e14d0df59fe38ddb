"""TorchServe handler: DLC complexities of posted images, from a fitted scorer.

The archive built by ``skdlc serve archive`` holds the fitted artifact and a small
metadata file (``skdlc_serving.json``); this handler loads either

- ``engine="torch"``: the fitted :class:`~skdlc.DLCScorer` saved with joblib (backbone
  module, preprocessing, mask ratios, prototypes, classes all travel inside it); or
- ``engine="onnx"``: an ONNX export folder of that scorer (``DLCScorer.export_onnx``),
  read by :class:`skdlc._onnx.OnnxDLCModel` and run with ONNX Runtime (no torch
  backbone).

Either way a request gets ``transform``'s numbers, computed by the same path driver:
the worker's engine prepares the masked variants once and keeps them between requests
(``prepare_variants: false`` masks the torch backbone again for every request).

Requests (``POST /predictions/<model>``), one or many images each:

- raw image bytes as the body; an optional label in the ``X-Label`` header
  (TorchServe does not pass query strings to handlers);
- multipart form: an image in field ``data`` (or ``image``, ``file``), optional
  ``label`` field;
- JSON object ``{"image": "<base64>", "label": "cat"}`` or
  ``{"images": ["<base64>", ...], "labels": ["cat", null, ...]}``;
- JSON list ``["<base64>", ...]`` or ``[{"image": "<base64>", "label": "cat"}, ...]``.

Each image gets ``{"complexities": {class: loss, ...}}``, plus ``"label"`` and
``"score"`` (the complexity of the given label, as ``DLCScorer.score_samples``) when a
label is given. A request with one image (raw bytes, multipart, ``"image"``) gets one
object back; a list or ``"images"`` gets a list, in order. With TorchServe batching
(``batchSize`` > 1) the images of all requests in a batch are scored together and each
request gets its own answer; a malformed request gets HTTP 400 with a message, without
failing the others in its batch.

This module defines exactly one class, as TorchServe's handler loader requires.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import logging
import os
import time
import warnings
from typing import Any

import numpy as np
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

logger = logging.getLogger(__name__)

#: Written next to the artifact by ``skdlc serve archive``.
META_FILE = "skdlc_serving.json"
#: Request header carrying the label of a raw-bytes image (TorchServe drops query strings).
LABEL_HEADER = "X-Label"
#: Response header: how many requests TorchServe batched with this one.
BATCH_HEADER = "X-Skdlc-Batch-Size"
_IMAGE_FIELDS = ("image", "data", "body", "file")
_DEFAULT_MAX_IMAGES = 256
_DEFAULT_MAX_PIXELS = 40_000_000
_MAX_VARIANT_BYTES = 2 * 1024**3


def _bad(msg: str) -> PredictionException:
    return PredictionException(msg, 400)


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return _b64(value, what)
    raise _bad(f"{what} must be image bytes or a base64 string, got {type(value).__name__}")


def _b64(text: str, what: str) -> bytes:
    if text.startswith("data:") and "," in text[:100]:
        text = text.split(",", 1)[1]  # data URI: data:image/png;base64,....
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{what} is not valid base64") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("label is not UTF-8 text") from None
    return value


def _fill_missing_params(estimator) -> None:
    """Give a scorer pickled by an older skdlc the defaults of parameters added since."""
    import inspect

    for name, p in inspect.signature(type(estimator).__init__).parameters.items():
        if name != "self" and p.default is not inspect.Parameter.empty and not hasattr(estimator, name):
            logger.warning("the saved scorer predates parameter %r; using its default %r", name, p.default)
            setattr(estimator, name, p.default)


# --------------------------------------------------------------------------- scoring
# DLCScorer.transform builds the T masked variants on every call (masks computed from
# the weights): right for one large call, but per request it costs far more than the
# forward passes themselves. A worker instead keeps one engine whose masked variants
# (torch weights, or ONNX Runtime sessions) are prepared once and retained, and scores
# each request through the same path driver as ``transform`` (skdlc._driver).
# tests/test_serving.py checks it equals DLCScorer.transform (and OnnxDLCModel.transform).

def _torch_transform(scorer, device, max_bytes: int, prepare: bool):
    """Per-class complexities of X from a fitted scorer, its variants kept when they fit."""
    import dataclasses

    from skdlc import _driver
    from skdlc._engine import TorchEngine
    from skdlc._masking import maskable_parameters

    bb = scorer.backbone_
    weight_bytes = sum(p.numel() * p.element_size() for _, p in maskable_parameters(bb.module))
    retain = prepare and weight_bytes * sum(r > 0 for r in scorer.mask_ratios_) <= max_bytes
    if prepare and not retain:
        logger.warning("masked variants over max_variant_bytes: masking per request instead")
    engine = TorchEngine(bb, masking=scorer.masking, device=device, keep_variants="auto", num_workers=0,
                         precision=getattr(scorer, "precision", "float32"), retain=retain)
    plan = dataclasses.replace(scorer._plan(ratios=scorer.mask_ratios_), embedding=False)

    def transform(X):
        return _driver.transform_input(plan, engine, X, input_spec=bb, batch_size=scorer.batch_size,
                                       ratios=scorer.mask_ratios_, prototypes=np.asarray(scorer.prototypes_))[0]

    return transform


def _looks_like_json(raw: bytes) -> bool:
    head = raw[:64].lstrip()
    return head[:1] in (b"{", b"[", b'"')


class DLCHandler(BaseHandler):
    """Serve :class:`~skdlc.DLCScorer` complexities over TorchServe.

    Settings, from the ``handler:`` section of the archive's ``model-config.yaml``:
    ``num_threads`` (torch / ONNX Runtime intra-op threads per worker),
    ``score_batch_size`` (images per forward pass), ``max_images_per_request`` (default
    256), ``max_image_pixels`` (default 40 million), ``device`` (``"auto"``: the
    worker's GPU when TorchServe gives it one, else the CPU), ``prepare_variants``
    (default true: build the masked variants once per worker; false: call
    ``transform`` of the scorer per request, which masks again every time) and
    ``max_variant_bytes`` (default 2 GiB: above it, torch variants are masked per
    request instead of kept).
    """

    def __init__(self):
        super().__init__()
        self.scorer = None
        self.classes: list = []
        self.class_names: list[str] = []
        self._index: dict[str, int] = {}
        self._batch = 1

    # ------------------------------------------------------------------ loading
    def initialize(self, context):
        props = context.system_properties
        model_dir = props.get("model_dir")
        self.manifest = context.manifest
        cfg = dict((getattr(context, "model_yaml_config", None) or {}).get("handler") or {})
        with open(os.path.join(model_dir, META_FILE), encoding="utf-8") as f:
            self.meta = json.load(f)
        from skdlc import __version__

        if self.meta.get("skdlc_version") not in (None, __version__):
            logger.warning("archive built with skdlc %s, serving with skdlc %s",
                           self.meta["skdlc_version"], __version__)
        self.max_images = int(cfg.get("max_images_per_request", _DEFAULT_MAX_IMAGES))
        self.max_pixels = int(cfg.get("max_image_pixels", _DEFAULT_MAX_PIXELS))
        threads = cfg.get("num_threads")
        prepare = bool(cfg.get("prepare_variants", True))
        engine = self.meta.get("engine", "torch")
        artifact = os.path.join(model_dir, self.meta["artifact"])
        if engine == "torch":
            import joblib
            import torch

            if threads:
                torch.set_num_threads(int(threads))
            device = str(cfg.get("device", "auto"))
            gpu = props.get("gpu_id")
            if device == "auto":
                device = f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu"
            self.device = torch.device(device)
            scorer = joblib.load(artifact)
            _fill_missing_params(scorer)
            params = {"device": device, "verbose": False, "memory": None, "num_workers": 0}
            if cfg.get("score_batch_size"):
                params["batch_size"] = int(cfg["score_batch_size"])
            scorer.set_params(**params)
            if scorer.backbone_.preprocessing is None or scorer.backbone_.collate is not None:
                raise ValueError(
                    f"the skdlc handler scores images; backbone {scorer.backbone_.name!r} takes no images "
                    "(it has no image preprocessing)"
                )
            self.scorer = scorer
            classes = list(scorer.classes_)
            self._transform = _torch_transform(
                scorer, self.device, int(cfg.get("max_variant_bytes", _MAX_VARIANT_BYTES)), prepare)
        elif engine == "onnx":
            import onnxruntime as ort

            from skdlc._onnx import OnnxDLCModel

            device = str(cfg.get("device", "auto"))
            gpu = props.get("gpu_id")
            if device == "auto":
                cuda = gpu is not None and "CUDAExecutionProvider" in ort.get_available_providers()
                device = f"cuda:{gpu}" if cuda else "cpu"
            kwargs = {"device": device, "num_workers": 0, "verbose": False}
            if threads:
                kwargs["threads"] = int(threads)
            if cfg.get("score_batch_size"):
                kwargs["batch_size"] = int(cfg["score_batch_size"])
            from ._layout import split_columns

            model = self.scorer = OnnxDLCModel.load(artifact, **kwargs)  # checks the files' checksums
            if model.preprocessing_ is None:
                raise ValueError("the skdlc handler scores images; this ONNX export takes no images")
            classes = list(model.classes_)
            # The model keeps its ONNX Runtime sessions between calls (built at the first).
            self._transform = lambda X: split_columns(model.transform(X), len(classes))[1]
        else:
            raise ValueError(f"{META_FILE}: unknown engine {engine!r} (expected 'torch' or 'onnx')")
        self.classes = classes
        self.class_names = [str(c.item() if hasattr(c, "item") else c) for c in classes]
        self._index = {name: i for i, name in enumerate(self.class_names)}
        self.initialized = True
        logger.info(
            "skdlc handler ready: engine=%s, %d classes, mask ratios %s",
            engine, len(classes), self.meta.get("mask_ratios"),
        )

    # ------------------------------------------------------------------ parsing
    def _label(self, value: Any) -> int | None:
        """A label from a request -> column index; None when no label is given."""
        value = _text(value)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _bad(f"a label must be a class name or number, got {json.dumps(value)[:80]}")
        keys = [str(value)]
        if isinstance(value, float) and value.is_integer():
            keys.append(str(int(value)))
        for k in keys:
            if k in self._index:
                return self._index[k]
        known = ", ".join(self.class_names[:20]) + (", ..." if len(self.class_names) > 20 else "")
        raise _bad(f"unknown label {str(value)[:80]!r}; known classes: {known}")

    def _decode(self, raw: bytes, what: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        from skdlc._data import decode_image

        if not raw:
            raise _bad(f"{what}: empty body, no image bytes")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(raw)) as im:
                    if im.width * im.height > self.max_pixels:
                        raise _bad(
                            f"{what} has {im.width}x{im.height} pixels, over the limit of "
                            f"{self.max_pixels} (handler setting max_image_pixels)"
                        )
                    return decode_image(im)  # 16-bit, float, EXIF: as the CLI and API
        except PredictionException:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as exc:
            raise _bad(f"{what}: not a readable image ({type(exc).__name__}: {str(exc)[:120]})") from None

    def _parse_json(self, doc: Any) -> tuple[list[np.ndarray], list[int | None], bool]:
        if isinstance(doc, list):
            items, single = doc, False
        elif isinstance(doc, dict):
            if "images" in doc:
                images, labels = doc["images"], doc.get("labels")
                if not isinstance(images, list):
                    raise _bad('"images" must be a list of base64 strings')
                if labels is None:
                    labels = [None] * len(images)
                if not isinstance(labels, list) or len(labels) != len(images):
                    raise _bad(f'"labels" must be a list as long as "images" ({len(images)})')
                items, single = [{"image": im, "label": lb} for im, lb in zip(images, labels)], False
            else:
                items, single = [doc], True
        elif isinstance(doc, str):
            items, single = [doc], True
        else:
            raise _bad("a JSON body must be an object, a list or a base64 string")
        if not items:
            raise _bad("the request holds no images")
        if len(items) > self.max_images:
            raise _bad(f"{len(items)} images in one request; the limit is {self.max_images}")
        images, labels = [], []
        for n, item in enumerate(items):
            what = "image" if single else f"image {n}"
            if isinstance(item, str):
                raw, label = _b64(item, what), None
            elif isinstance(item, dict):
                key = next((k for k in _IMAGE_FIELDS if k in item), None)
                if key is None:
                    raise _bad(f'{what}: expected an "image" field with base64 image data')
                raw, label = _as_bytes(item[key], what), item.get("label")
            else:
                raise _bad(f"{what}: expected a base64 string or an object with \"image\"")
            images.append(self._decode(raw, what))
            labels.append(self._label(label))
        return images, labels, single

    def _header(self, idx: int, name: str) -> str | None:
        if self.context is None:
            return None
        try:
            headers = self.context.get_all_request_header(idx) or {}
        except (AttributeError, IndexError, TypeError):
            return None
        name = name.lower()
        return next((v for k, v in headers.items() if k.lower() == name and isinstance(v, str)), None)

    def _parse(self, row: dict, idx: int = 0) -> tuple[list[np.ndarray], list[int | None], bool]:
        """One request -> (images, label indices, whether it asked for one image)."""
        if not isinstance(row, dict):
            raise _bad("empty request")
        key = next((k for k in _IMAGE_FIELDS if row.get(k) is not None), None)
        if key is None:
            raise _bad('no image in the request: send image bytes as the body, a form field "data", or JSON')
        value = row[key]
        if isinstance(value, (dict, list)):
            return self._parse_json(value)
        if isinstance(value, str):
            try:
                doc = json.loads(value)
            except ValueError:
                doc = value  # a bare base64 string sent as text
            return self._parse_json(doc)
        if not isinstance(value, (bytes, bytearray)):
            return self._parse_json(value)  # a JSON number, true, null: rejected there
        raw = bytes(value)
        if _looks_like_json(raw):
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise _bad(f"the body is not valid JSON ({str(exc)[:120]})") from None
            return self._parse_json(doc)
        label = row.get("label")
        if label is None:
            label = self._header(idx, LABEL_HEADER)
        return [self._decode(raw, "image")], [self._label(label)], True

    # ------------------------------------------------------------------ TorchServe API
    def preprocess(self, data):
        """Parse every request of the batch; a malformed one keeps its error, not the batch's."""
        parsed = []
        for idx, row in enumerate(data):
            try:
                parsed.append(self._parse(row, idx))
            except PredictionException as exc:
                parsed.append(exc)
        return parsed

    def inference(self, data, *args, **kwargs):
        """Score the images of all well-formed requests in one call."""
        images = [im for p in data if not isinstance(p, Exception) for im in p[0]]
        if not images:
            return data, None
        same = all(im.shape == images[0].shape for im in images)
        X = np.stack(images) if same else images
        losses = np.asarray(self._transform(X), dtype=np.float64)
        return data, losses

    def postprocess(self, data):
        """One JSON answer per request, in order."""
        parsed, losses = data
        out, start = [], 0
        for idx, p in enumerate(parsed):
            if isinstance(p, Exception):
                code = getattr(p, "error_code", 400)
                msg = getattr(p, "message", str(p))
                self._status(idx, code, msg)
                out.append(json.dumps({"code": code, "type": "BadRequest", "message": msg}))
                continue
            images, labels, single = p
            rows = []
            for k, label in enumerate(labels):
                row = losses[start + k]
                entry: dict[str, Any] = {}
                if label is not None:
                    entry["label"] = self.class_names[label]
                    entry["score"] = _finite(row[label])
                entry["complexities"] = dict(zip(self.class_names, map(_finite, row)))
                rows.append(entry)
            start += len(images)
            self._content_type(idx)
            out.append(json.dumps(rows[0] if single else rows))
        return out

    def handle(self, data, context):
        start = time.time()
        self.context = context
        self._batch = len(data)
        parsed = self.preprocess(data)
        out = self.postprocess(self.inference(parsed))
        with contextlib.suppress(Exception):  # metrics are best effort
            context.metrics.add_time("HandlerTime", round((time.time() - start) * 1000, 2), None, "ms")
        return out

    def _status(self, idx: int, code: int, msg: str) -> None:
        if self.context is not None:
            self.context.set_response_status(code=code, phrase=msg[:200], idx=idx)
            self._content_type(idx)

    def _content_type(self, idx: int) -> None:
        if self.context is not None:
            self.context.set_response_content_type(idx, "application/json")
            self.context.set_response_header(idx, BATCH_HEADER, str(self._batch))


def _finite(x) -> float | None:
    """A float for a JSON answer; NaN and infinities become null (strict JSON)."""
    x = float(x)
    return x if np.isfinite(x) else None

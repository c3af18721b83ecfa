"""The napari widget: choose mask, cutoff and threshold on a stack, preview, register.

The widget is the step-by-step API (:class:`daskreg.Registration`) behind a few
controls: the preview shows the Fourier mask and one pair's correlation exactly as a
registration with these parameters computes them (:func:`daskreg.views.pair_views`),
and "Register" runs the steps of :func:`daskreg.register` in a worker thread, one
progress step each, so the result is the API's. A lazy stack too large for memory goes
to :func:`daskreg.register` whole (the Dask engine), as the API itself would send it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import xarray as xr
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Layer
from napari.qt.threading import GeneratorWorker, thread_worker

from daskreg.api import register
from daskreg.autoparams import resolve_stack
from daskreg.errors import DaskregError, StackShapeError
from daskreg.kernels.masks import MASK_KINDS
from daskreg.napari._layers import result_layers
from daskreg.parallel.cluster import choose_engine
from daskreg.params import RegistrationParams
from daskreg.registration import Registration
from daskreg.result import RegistrationResult
from daskreg.views import PairViews, pair_views

__all__ = ["STEPS", "RegisterWidget", "layer_stack", "registration_steps"]

#: What the progress bar counts: the steps of a registration.
STEPS: tuple[str, ...] = (
    "choosing automatic parameters",
    "measuring pairs",
    "solving shifts",
    "averaging",
)
MASK_NAME = "daskreg Fourier mask"
CORRELATION_NAME = "daskreg correlation"


def layer_stack(layer: Image) -> xr.DataArray:
    """A napari image layer's frames as daskreg's ``(frame, y, x)`` stack, not copied.

    The pixel size comes from the layer's metadata when daskreg's reader opened it, else
    from its scale (when not 1) and units.

    Raises
    ------
    StackShapeError
        The layer is not one 3-D (frame, y, x) stack.
    """
    data = layer.data
    if layer.multiscale or layer.rgb or data.ndim != 3:
        raise StackShapeError(
            f"layer {layer.name!r} has {data.ndim} dimensions"
            f"{' (multiscale)' if layer.multiscale else ''}{' (RGB)' if layer.rgb else ''}; "
            "the daskreg widget registers one grey (frame, y, x) stack: choose such a layer"
        )
    attrs = {
        key: value
        for key, value in layer.metadata.get("daskreg", {}).items()
        if key in ("pixel_size", "unit", "source")
    }
    if "pixel_size" not in attrs and not np.allclose(layer.scale[-2:], 1):
        attrs["pixel_size"] = tuple(float(s) for s in layer.scale[-2:])
        attrs["unit"] = str(layer.units[-1])
    coords = {
        dim: np.arange(size) for dim, size in zip(("frame", "y", "x"), data.shape, strict=True)
    }
    return xr.DataArray(data, dims=("frame", "y", "x"), coords=coords, attrs=attrs)


def registration_steps(
    stack: xr.DataArray, params: dict[str, Any], registration: Registration | None = None
) -> Generator[tuple[int, str], None, RegistrationResult]:
    """Register ``stack`` as :func:`daskreg.register` does, yielding after each step.

    Parameters
    ----------
    stack : xarray.DataArray
        Dims ``(frame, y, x)``.
    params : dict
        Parameters of :func:`daskreg.register`.
    registration : Registration, optional
        A registration of ``stack`` with ``params`` already set whose finished steps
        (loaded frames, automatic parameters) are reused.

    Yields
    ------
    (int, str)
        Number of steps done and the next one (:data:`STEPS`).

    Returns
    -------
    RegistrationResult
        The same result as ``daskreg.register(stack, **params)``.
    """
    if choose_engine(stack, "auto", ()) == "dask":
        yield 0, "registering on the Dask engine"
        return register(stack, progress=False, **params)
    reg = Registration(stack, **params) if registration is None else registration
    yield 0, STEPS[0]
    reg.params  # noqa: B018 - resolving the automatic parameters is this step
    yield 1, STEPS[1]
    reg.find_shifts()
    yield 2, STEPS[2]
    reg.analysis  # noqa: B018 - the solve is this step
    yield 3, STEPS[3]
    return reg.run()


class RegisterWidget(Container):
    """Register a stack layer of the viewer with daskreg.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose 3-D image layers are offered, and where the preview and the
        result's layers are added.

    Attributes
    ----------
    result : RegistrationResult or None
        The last registration's result; its summary and the run's warnings (frames
        left out, low dose) are shown under the buttons.
    worker : GeneratorWorker or None
        The running (or last) registration.
    """

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self._viewer = viewer
        # The stack the kept registration is of, and that registration.
        self._registration: tuple[Any, Registration] | None = None
        self.result: RegistrationResult | None = None
        self.worker: GeneratorWorker | None = None
        self._warnings: list[str] = []
        self.stack_layer = ComboBox(label="stack", choices=self._stack_layers)
        self.mask = ComboBox(label="mask", choices=["auto", *MASK_KINDS], value="auto")
        self.n = FloatSpinBox(label="cutoff n (0: auto)", value=0, min=0, max=4096, step=0.5)
        self.threshold = FloatSpinBox(
            label="threshold (0: auto)", value=0, min=0, max=1000, step=0.1
        )
        self.pair_i = SpinBox(label="pair: frame i", value=0, min=0, max=1_000_000)
        self.pair_j = SpinBox(label="pair: frame j", value=1, min=0, max=1_000_000)
        self.preview_button = PushButton(text="Preview mask and correlation")
        self.register_button = PushButton(text="Register")
        self.progress = ProgressBar(value=0, min=0, max=len(STEPS), label="progress")
        self.status = Label(value="")
        self.extend(
            [
                self.stack_layer,
                self.mask,
                self.n,
                self.threshold,
                self.pair_i,
                self.pair_j,
                self.preview_button,
                self.register_button,
                self.progress,
                self.status,
            ]
        )
        self.preview_button.changed.connect(self._preview_clicked)
        self.register_button.changed.connect(self._register_clicked)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        self.reset_choices()

    def _stack_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb
        ]

    def parameters(self) -> dict[str, Any]:
        """The chosen :func:`daskreg.register` parameters (0 means chosen from the data)."""
        return {
            "mask": self.mask.value,
            "n": self.n.value or None,
            "threshold": self.threshold.value or None,
        }

    def registration(self) -> Registration:
        """The step-by-step registration of the chosen layer with the chosen parameters.

        Kept while the layer stays the same, so that a new preview or the registration
        reuses the loaded frames and whatever the changed parameters leave valid.
        """
        layer = self.stack_layer.value
        if layer is None:
            raise StackShapeError(
                "no (frame, y, x) image layer to register; open a stack in the viewer first"
            )
        if self._registration is None or self._registration[0] is not layer.data:
            stack = layer_stack(layer)
            self._registration = (layer.data, Registration(stack, **self.parameters()))
        else:
            self._registration[1].set_params(**self.parameters())
        return self._registration[1]

    def preview(self) -> PairViews:
        """Show the Fourier mask and the correlation of frames ``i``, ``j``; return them.

        Both are added (or replaced) as image layers beside the stack, at its scale: the
        mask centred on zero frequency, the correlation on zero shift.
        """
        layer = self.stack_layer.value
        reg = self.registration()
        i, j = self.pair_i.value, self.pair_j.value
        if not (0 <= i < reg.n_frames and 0 <= j < reg.n_frames) or i == j:
            raise StackShapeError(
                f"the pair ({i}, {j}) is not two different frames of the {reg.n_frames} "
                f"in the stack; choose i and j from 0 to {reg.n_frames - 1}"
            )
        if choose_engine(reg.stack, "auto", ()) == "numpy":
            # The frames as the registration correlates them (hot pixels repaired).
            frames, params = reg.frames[[i, j]], reg.params
        else:
            # Too large for memory: only the sampled frames and the pair are read.
            params = RegistrationParams(**self.parameters())
            params = params.replace(**resolve_stack(reg.stack, params).changes)
            frames = np.asarray(reg.stack.data[[i, j]])
        views = pair_views(frames[0], frames[1], params)
        scale = tuple(layer.scale[-2:])
        gap = (reg.frame_shape[1] + 8) * scale[1]
        self._show(MASK_NAME, views.fourier_mask, scale, gap)
        self._show(CORRELATION_NAME, views.correlation, scale, 2 * gap)
        dy, dx = views.shift
        self.status.value = f"pair ({i}, {j}): r_ij = ({dy:.2f}, {dx:.2f}) px, mask {params.mask}"
        return views

    def _show(self, name: str, image: np.ndarray, scale: tuple, offset: float) -> None:
        if name in self._viewer.layers:
            self._viewer.layers[name].data = image
            return
        self._viewer.add_image(
            image, name=name, scale=scale, translate=(0, offset), colormap="magma"
        )

    def start_registration(self) -> GeneratorWorker:
        """Register the chosen layer in a worker thread; its layers are added when done."""
        layer = self.stack_layer.value
        reg = self.registration()
        worker = _registration_worker(reg.stack, self.parameters(), reg)
        worker.yielded.connect(self._on_step)
        worker.returned.connect(lambda result: self._on_result(result, layer.name, reg.stack))
        worker.errored.connect(self._on_error)
        worker.warned.connect(self._on_warning)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._warnings = []
        self._set_busy(True)
        worker.start()
        return worker

    def _preview_clicked(self) -> None:
        try:
            self.preview()
        except DaskregError as exc:
            self.status.value = str(exc)

    def _register_clicked(self) -> None:
        try:
            self.start_registration()
        except DaskregError as exc:
            self.status.value = str(exc)

    def _on_step(self, step: tuple[int, str]) -> None:
        done, what = step
        self.progress.value = done
        self.status.value = f"{what} ..."

    def _on_result(self, result: RegistrationResult, name: str, stack: xr.DataArray) -> None:
        self.result = result
        for data, kwargs, kind in result_layers(result, stack=stack, name=name):
            self._viewer.add_layer(Layer.create(data, kwargs, kind))
        self.progress.value = len(STEPS)
        self.status.value = "\n".join([repr(result), *self._warnings])

    def _on_error(self, exc: Exception) -> None:
        self.status.value = f"registration failed: {exc}"

    def _on_warning(self, warning: tuple) -> None:
        # The worker's warnings (frames left out, low dose) stay under the result.
        self._warnings.append(str(warning[0]))
        self.status.value = f"{self.status.value}\n{warning[0]}"

    def _on_finished(self) -> None:
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        for control in (self.register_button, self.preview_button, self.stack_layer):
            control.enabled = not busy


@thread_worker(start_thread=False, progress={"total": len(STEPS), "desc": "daskreg register"})
def _registration_worker(
    stack: xr.DataArray, params: dict[str, Any], registration: Registration
) -> Generator[tuple[int, str], None, RegistrationResult]:
    return (yield from registration_steps(stack, params, registration))

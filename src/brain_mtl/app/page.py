"""The Streamlit page of ``python -m brain_mtl app`` (``streamlit run`` executes this file on every interaction).

Layout only: reading, predicting, drawing and the files come from :mod:`brain_mtl.app.service`. The model is loaded
once per file (``st.cache_resource``, keyed by path and modification time) and shared by all sessions; each session
keeps its recent predictions, keyed by the file's content and the settings, so that moving the opacity slider or
downloading a file does not run the network again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import streamlit as st

from brain_mtl.app import service
from brain_mtl.app.launch import CKPT_ENV, DEVICE_ENV, THREADS_ENV

# No bare strings below the module docstring: Streamlit's "magic" would print them in the page.
CACHE_ENTRIES = 64  # results a session keeps per cache (all scans shown, under a few recent settings) ...
CACHE_BYTES = 768 * 2**20  # ... and at most this much memory per cache: a 25-megapixel scan's result is ~300 MB


@st.cache_resource(show_spinner="Loading the model ...", max_entries=2)
def _load_model(path: str, modified_ns: int, device: str) -> service.AppModel:
    # modified_ns is part of the cache key: a checkpoint rewritten by training is loaded again.
    del modified_ns
    threads = os.environ.get(THREADS_ENV, "")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    model = service.load_app_model(path, device)
    model.warm_up()
    return model


@st.cache_resource(show_spinner=False)
def _example(name: str) -> service.ScanInput:
    return service.example_scan(name)


def _plain(text: str) -> str:
    """Text shown as itself in Streamlit's Markdown (file names and messages may hold ``*``, ``_``, ``$``, ...)."""
    return "".join("\\" + char if char in "\\`*_[]<>#|~$" else char for char in text)


def _session_cache(name: str) -> OrderedDict:
    if name not in st.session_state:
        st.session_state[name] = OrderedDict()
    return st.session_state[name]


def _size(value: Any) -> int:
    """Bytes held by a cached value's arrays and byte strings (one level deep)."""
    parts = vars(value).values() if hasattr(value, "__dict__") else [value]
    total = 0
    for part in parts:
        for item in part if isinstance(part, list) else [part]:
            if isinstance(item, bytes):
                total += len(item)
            elif hasattr(item, "__dict__") or hasattr(item, "__dataclass_fields__"):
                total += sum(len(v) if isinstance(v, bytes) else getattr(v, "nbytes", 0) for v in vars(item).values())
    return total


def _remember(cache: OrderedDict, key: Any, value: Any) -> None:
    """Keep ``value`` in a session cache, dropping the oldest entries beyond the count and memory limits."""
    cache[key] = (value, _size(value))
    cache.move_to_end(key)
    while len(cache) > 1 and (len(cache) > CACHE_ENTRIES or sum(size for _, size in cache.values()) > CACHE_BYTES):
        cache.popitem(last=False)


def _recall(cache: OrderedDict, key: Any) -> Any:
    entry = cache.get(key)
    if entry is None:
        return None
    cache.move_to_end(key)
    return entry[0]


def _model_facts(model: service.AppModel) -> None:
    st.sidebar.header("Model")
    lines = [f"- **{label}:** " + (f"`{value}`" if label == "File" else value) for label, value in model.facts.rows()]
    st.sidebar.markdown("\n".join(lines))


def _settings(model: service.AppModel) -> tuple[service.Settings, float]:
    st.sidebar.header("Settings")
    threshold = st.sidebar.slider(
        "Mask threshold",
        min_value=0.0,
        max_value=1.0,
        value=float(round(model.facts.mask_threshold, 2)),
        step=0.01,
        key="threshold",
        help="A pixel is tumour when its predicted probability is above this.",
    )
    gate = st.sidebar.checkbox(
        "No-tumour gate",
        value=False,
        key="gate",
        help="Empty the mask when the most probable class is no_tumor.",
    )
    tta = st.sidebar.checkbox(
        "Flip test-time augmentation",
        value=False,
        key="tta",
        help="Average the prediction over the scan and its mirror image (twice the time).",
    )
    gradcam = st.sidebar.checkbox(
        "Grad-CAM heat map",
        value=False,
        key="gradcam",
        disabled=not model.supports_gradcam,
        help="Where in the scan the evidence for the predicted class lies."
        if model.supports_gradcam
        else "Grad-CAM needs gradients: start the app with the .ckpt checkpoint rather than the ONNX file.",
    )
    opacity = st.sidebar.slider("Mask opacity", min_value=0.0, max_value=1.0, value=0.4, step=0.05, key="opacity")
    settings = service.Settings(float(threshold), bool(gate), bool(tta), bool(gradcam and model.supports_gradcam))
    return settings, float(opacity)


def _inputs() -> list[service.ScanInput]:
    uploads = st.file_uploader(
        "Upload scans: JPEG, PNG, BMP, TIFF or WebP, gray or RGB, any size",
        type=list(service.UPLOAD_TYPES),
        accept_multiple_files=True,
        key="uploads",
    )
    examples = st.multiselect(
        "Or pick example scans (synthetic slices, not real MRI; their true outline is drawn in green)",
        options=list(service.EXAMPLES),
        key="examples",
    )
    scans = [service.ScanInput.upload(upload.name, upload.getvalue()) for upload in uploads or []]
    scans += [_example(name) for name in examples]
    return scans


def _predict_all(
    model: service.AppModel, scans: list[service.ScanInput], settings: service.Settings
) -> tuple[list[service.ScanResult], list[tuple[str, str]]]:
    cache = _session_cache("brain_mtl_predictions")
    results: list[service.ScanResult] = []
    failures: list[tuple[str, str]] = []
    for scan in scans:
        key = (model.key, scan.name, scan.digest, settings)
        result = _recall(cache, key)
        if result is None:
            try:
                with st.spinner(f"Predicting {scan.name} ..."):
                    result = service.predict_scan(model, scan, settings)
            except service.UploadError as error:
                failures.append((scan.name, str(error)))
                continue
            except Exception as error:  # any other failure is reported for this file only; the others go on
                failures.append((scan.name, f"{scan.name}: could not be predicted ({type(error).__name__}: {error})"))
                continue
            _remember(cache, key, result)
        results.append(result)
    return results, failures


def _exports(
    model: service.AppModel,
    results: list[service.ScanResult],
    failures: list[tuple[str, str]],
    settings: service.Settings,
) -> service.ExportFiles:
    cache = _session_cache("brain_mtl_exports")
    key = (model.key, settings, tuple((r.scan.name, r.scan.digest) for r in results), tuple(failures))
    files = _recall(cache, key)
    if files is None:
        recorded = {
            "model": model.facts.source,
            "image_size": model.facts.image_size,
            "keep_aspect": model.facts.keep_aspect,
            "mask_threshold": settings.mask_threshold,
            "mask_gate": settings.mask_gate,
            "tta": "flip" if settings.flip_tta else "none",
            "gradcam": settings.gradcam,
            "source": "brain_mtl app",
        }
        files = service.export_files(results, failures, model.facts.class_names, recorded)
        _remember(cache, key, files)
    return files


def _probability_chart(result: service.ScanResult) -> None:
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame(
        {"class": list(result.prediction.probabilities), "probability": list(result.prediction.probabilities.values())}
    )
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title=None)),
            y=alt.Y("class:N", sort=None, title=None),
            tooltip=["class", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=130)
    )
    st.altair_chart(chart)


def _pictures(
    model: service.AppModel, result: service.ScanResult, settings: service.Settings, opacity: float
) -> service.Pictures:
    cache = _session_cache("brain_mtl_pictures")
    key = (model.key, result.scan.name, result.scan.digest, settings, opacity)
    shown = _recall(cache, key)
    if shown is None:
        shown = service.pictures(result, opacity)
        _remember(cache, key, shown)
    return shown


def _show_result(
    index: int,
    result: service.ScanResult,
    stem: str,
    files: service.ExportFiles,
    shown: service.Pictures,
    hardware: str,
) -> None:
    prediction = result.prediction
    gradcam = files.gradcams[index]
    with st.container(border=True, key=f"result-{stem}"):
        st.subheader(_plain(result.scan.name))
        pictures, facts = st.columns([3 if gradcam is not None else 2, 1.2])
        with pictures:
            columns = st.columns(3 if gradcam is not None else 2)
            columns[0].image(shown.scan, caption="Scan", output_format="PNG")
            columns[1].image(shown.overlay, caption="Predicted tumour (red)", output_format="PNG")
            if gradcam is not None:
                columns[2].image(gradcam, caption="Grad-CAM of the predicted class", output_format="PNG")
            with st.container(horizontal=True):
                st.download_button(
                    "Mask PNG",
                    files.masks[index],
                    file_name=f"{stem}_mask.png",
                    mime="image/png",
                    key=f"mask-{stem}",
                    on_click="ignore",
                )
                st.download_button(
                    "Overlay PNG",
                    shown.overlay_full,
                    file_name=f"{stem}_overlay.png",
                    mime="image/png",
                    key=f"overlay-{stem}",
                    on_click="ignore",
                )
                if gradcam is not None:
                    st.download_button(
                        "Grad-CAM PNG",
                        gradcam,
                        file_name=f"{stem}_gradcam.png",
                        mime="image/png",
                        key=f"gradcam-{stem}",
                        on_click="ignore",
                    )
        with facts:
            st.markdown(f"**Predicted class: {prediction.class_name}** ({prediction.probability:.1%})")
            st.table(
                {
                    "class": list(prediction.probabilities),
                    "probability": [f"{p:.1%}" for p in prediction.probabilities.values()],
                }
            )
            _probability_chart(result)
            height, width = prediction.size
            st.markdown(f"**Tumour area:** {result.area_px:,} px, {result.area_share:.2%} of the slice")
            st.caption(f"{width} x {height} px; read and predicted in {result.seconds:.2f} s ({hardware})")


def _summary(results: list[service.ScanResult], files: service.ExportFiles) -> None:
    st.subheader("All scans")
    # A dataframe shows its cells as text: st.table renders them as Markdown, where an uploaded file named
    # "![x](https://host)" would make the viewer's browser fetch from that host.
    st.dataframe(
        {
            "file": [r.scan.name for r in results],
            "class": [r.prediction.class_name for r in results],
            "probability": [f"{r.prediction.probability:.1%}" for r in results],
            "tumour px": [f"{r.area_px:,}" for r in results],
            "tumour share": [f"{r.area_share:.2%}" for r in results],
        },
        hide_index=True,
    )
    left, right = st.columns(2)
    left.download_button(
        "Results CSV", files.csv, file_name="predictions.csv", mime="text/csv", key="csv", on_click="ignore"
    )
    right.download_button(
        "Results JSON (with settings and failed files)",
        files.json,
        file_name="predictions.json",
        mime="application/json",
        key="json",
        on_click="ignore",
    )


def render() -> None:
    """Draw the page (Streamlit runs this on every interaction)."""
    st.set_page_config(page_title="brain_mtl", layout="wide")
    st.title("Brain tumour segmentation and classification")
    st.warning(service.RESEARCH_NOTICE)
    path = os.environ.get(CKPT_ENV, "")
    if not path:
        st.info(service.NO_CHECKPOINT)
        return
    try:
        model = _load_model(path, os.stat(path).st_mtime_ns, os.environ.get(DEVICE_ENV, "auto") or "auto")
    except Exception as error:  # a missing, damaged or foreign file: its message, never a traceback
        st.error(_plain(f"Cannot load the model {path}: {error}"))
        return
    _model_facts(model)
    settings, opacity = _settings(model)
    scans = _inputs()
    if not scans:
        st.caption("Upload a scan or pick an example to see its predicted tumour outline, class and area.")
        return
    results, failures = _predict_all(model, scans, settings)
    for _, message in failures:
        st.error(_plain(message))
    if not results:
        return
    files = _exports(model, results, failures, settings)
    for index, (result, stem) in enumerate(zip(results, files.stems, strict=True)):
        _show_result(index, result, stem, files, _pictures(model, result, settings, opacity), model.hardware)
    _summary(results, files)


if __name__ == "__main__":
    render()

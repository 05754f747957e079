"""View helpers shared by the pages: cached models, the dataset/model/image pickers. No model math here."""
from __future__ import annotations

import io

import numpy as np
import streamlit as st
import torch
from PIL import Image

from app_pages.background import remember, shelf
from gradviz import list_models, load_model
from gradviz.attacks.registry import Attack
from gradviz.attribution.sanity import SanityResult, cascading_check
from gradviz.data.datasets import class_names, dataset_names, has_masks, input_shape, load_sample, load_sample_masks
from gradviz.data.images import ImageError, prepare_digit
from gradviz.jobs import JobHandle, JobRunner
from gradviz.nets.architecture import channels_last, frozen
from gradviz.nets.cards import ModelFileError
from gradviz.nets.catalog import default_models
from gradviz.nets.external import ExternalModelError
from gradviz.params import Param
from gradviz.progress import Estimate
from gradviz.study.auth import session_expired
from gradviz.study.deployment import study_only

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SANITY_KEPT = 256  # (model, method, images) checks kept per process: each holds its maps, under 1 MB
SOURCES = ("Test sample", "Upload", "Draw")


@st.cache_resource(show_spinner="Loading model…", max_entries=32)
def cached_model(card_path: str, sha256: str) -> tuple[torch.nn.Module, dict]:
    """One shared copy per model file (keyed by its hash), weights frozen: pages only need input gradients.
    Channels-last weights take oneDNN's fast path on CPU (a target grid: 6.7 s → 5.4 s)."""
    model, card = load_model(card_path, DEVICE)
    return frozen(channels_last(model) if DEVICE == "cpu" else model), card


@st.cache_resource
def job_runner() -> JobRunner:
    """Process-wide runner: one background job at a time, shared by every session."""
    return JobRunner()


@st.fragment(run_every=1.0)
def job_status(state_key: str, doing: str, unit: str, finished: str) -> None:
    """Progress of the background job whose id the session keeps under `state_key`, then its result or error."""
    job = job_runner().jobs.get(st.session_state.get(state_key, ""))
    if job is None:
        return
    if job.state in ("queued", "running"):
        st.progress(job.fraction, text=f"{doing}: {job.message or 'starting…'} ({job.done}/{job.total} {unit})")
    elif job.state == "done":
        st.success(f"{finished} finished: {job.result}")
        if st.session_state.get(f"{state_key}_refreshed") != job.id:  # once: the page's results now include it
            st.session_state[f"{state_key}_refreshed"] = job.id
            st.rerun(scope="app")
    else:
        st.error(f"{finished} {job.state}: {job.error}")


def submit_once(state_key: str, settings: object, name: str, fn) -> bool:
    """Queue `fn` as this session's job under `state_key`, unless that job is still going with the same `settings`:
    a second Enter or click does not start the same run twice. True when queued."""
    job = job_runner().jobs.get(st.session_state.get(state_key, ""))
    if job is not None and job.state in ("queued", "running") and st.session_state.get(f"{state_key}_settings") == settings:
        st.info("The same run is already going; its progress is below.", icon=":material/hourglass_top:")
        return False
    st.session_state[state_key] = submit_job(name, fn).id
    st.session_state[f"{state_key}_settings"] = settings
    return True


def submit_job(name: str, fn) -> JobHandle:
    """Queue work on the shared runner. In study mode only a logged-in researcher may: a participant (or anyone
    who is not logged in) cannot occupy the one job thread."""
    if study_only() and session_expired(st.session_state.get("researcher_seen")):
        raise PermissionError("background work is for the logged-in researcher only in study mode")
    return job_runner().submit(name, fn)


@st.cache_data(max_entries=4)
def sample(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_sample(dataset)
    return x.numpy(), y.numpy()


@st.cache_data(max_entries=4)
def sample_masks(dataset: str) -> np.ndarray | None:
    """Ground-truth masks [N, H, W] of the test sample (Decoy MNIST's swatch, Block MNIST's signal block)."""
    masks = load_sample_masks(dataset)
    return None if masks is None else masks[:, 0].numpy()


def sanity_key(dataset: str, sha256: str, method: str, n: int) -> tuple:
    """Where a sanity check sits on its shelf: keyed by the model's hash, so a retrained model is checked again."""
    return dataset, sha256, method, n


def sanity_check(dataset: str, model: str, sha256: str, method: str, n: int = 16) -> SanityResult:
    """The cascading randomisation check of one model and method (default settings) on the first n images of
    the test sample, from the shelf the Sanity checks page fills, or computed here."""
    def make() -> SanityResult:
        net = models_named([model], dataset)[model]
        return cascading_check(net, *sample_tensors(dataset, n), method)
    return remember(shelf("sanity", SANITY_KEPT), sanity_key(dataset, sha256, method, n), make)


def sample_tensors(dataset: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of the committed test sample and their labels, on the pages' device."""
    xs, ys = sample(dataset)
    return torch.from_numpy(xs[:n]).to(DEVICE), torch.from_numpy(ys[:n]).to(DEVICE)


def cards_of(dataset: str) -> dict[str, dict]:
    """Cards by name; where a user model shares a zoo model's name, the zoo's, as load_model resolves it."""
    cards: dict[str, dict] = {}
    for card in list_models():
        if card.get("dataset") == dataset:
            cards.setdefault(card["name"], card)
    return cards


def models_named(names: list[str], dataset: str) -> dict[str, torch.nn.Module]:
    """The named models of `dataset`; one that cannot be built (a changed file, a model from outside whose module
    no longer imports) is left out with its reason shown, and the page stops only when none is left."""
    cards, models = cards_of(dataset), {}
    for name in (n for n in names if n in cards):
        try:
            models[name] = cached_model(cards[name]["card_path"], cards[name]["sha256"])[0]
        except (ModelFileError, ExternalModelError) as exc:
            st.error(f"**{name}** cannot be loaded: {exc}", icon=":material/error:")
    if names and not models:
        st.stop()
    return models


def pick_dataset() -> str:
    return st.sidebar.selectbox("Dataset", dataset_names(), key="dataset", persist_state="session")


def cards_or_stop(dataset: str) -> dict[str, dict]:
    """`cards_of(dataset)`, or a message saying how to get a model and the page stops there."""
    cards = cards_of(dataset)
    if not cards:
        st.warning(f"No models for {dataset}. Train one on the Train page or with `python -m gradviz train`.")
        st.stop()
    return cards


def pick_models(dataset: str, label: str = "Models to compare", key: str = "models",
                max_selections: int = 6) -> list[str]:
    cards = cards_or_stop(dataset)
    names = list(cards)
    # Distilled is left out of the default: its Σ log p gradients are ~10× the others' and would wash out a
    # shared colour scale, hiding the normal-vs-gradreg contrast the paper is about. One click adds it.
    st.session_state.setdefault(f"{key}_{dataset}", default_models(cards, ("normal", "advtrain", "gradreg-uniform",
                                                                            "gradreg")))
    chosen = st.multiselect(label, names, key=f"{key}_{dataset}", max_selections=max_selections,
                            persist_state="session")
    if not chosen:
        st.info("Pick at least one model.")
        st.stop()
    return chosen


def _from_sample(dataset: str) -> tuple[torch.Tensor, int, str]:
    x, y = sample(dataset)
    names = class_names(dataset)
    cls = st.selectbox("Class", ["any", *names], key=f"class_{dataset}", persist_state="session")
    index = np.arange(len(y)) if cls == "any" else np.flatnonzero(y == names.index(cls))
    i = st.slider("Image", 0, len(index) - 1, key=f"index_{dataset}_{cls}", persist_state="session")
    k = int(index[i])
    st.session_state["sample_index"] = k
    return torch.from_numpy(x[k:k + 1]), int(y[k]), f"test sample #{k} ({names[int(y[k])]})"


def picked_sample_index() -> int | None:
    """The test-sample index of the image pick_image returned on this run (None for an upload or drawing)."""
    return st.session_state.get("sample_index")


def _preview(steps: list[tuple[str, np.ndarray]]) -> None:
    cols = st.columns(len(steps))
    for col, (name, arr) in zip(cols, steps):
        col.image((np.clip(arr, 0, 1) * 255).astype(np.uint8), caption=name, width=90, output_format="PNG")


def _from_bytes(data: bytes | None, key: str) -> torch.Tensor | None:
    """Run the upload preprocessing once per new file and keep the 28×28 result for later page visits."""
    if data is not None:
        digest = hash(data)
        if st.session_state.get(f"{key}_hash") != digest:
            st.session_state[f"{key}_hash"] = digest
            try:
                x, steps = prepare_digit(data)
                st.session_state[key], st.session_state[f"{key}_steps"] = x, steps
                st.session_state.pop(f"{key}_error", None)
            except ImageError as exc:
                st.session_state.pop(key, None)
                st.session_state[f"{key}_error"] = str(exc)
    if st.session_state.get(f"{key}_error"):
        st.error(st.session_state[f"{key}_error"])
        return None
    if key in st.session_state:
        steps = [name for name, _ in st.session_state[f"{key}_steps"]]
        st.caption(f"Made into a digit as MNIST's are: {' → '.join(steps)} (each step under Preprocessing).")
        with st.expander("Preprocessing", expanded=False):
            _preview(st.session_state[f"{key}_steps"])
        return st.session_state[key]
    return None


def _drawn() -> bytes | None:
    try:
        from streamlit_drawable_canvas import st_canvas
    except ImportError:
        st.info("Drawing needs the package streamlit-drawable-canvas.")
        return None
    result = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", height=224,
                       width=224, drawing_mode="freedraw", key="canvas", return_image_data=True)
    if result is None or result.image_data is None or result.image_data[..., :3].max() == 0:
        return None
    buffer = io.BytesIO()
    Image.fromarray(result.image_data.astype(np.uint8)).convert("L").save(buffer, "PNG")
    return buffer.getvalue()


def pick_image(dataset: str) -> tuple[torch.Tensor, int, str]:
    """An image [1, 1, H, W] on the app's device, its label (asked for when unknown) and a caption. A dataset with
    ground truth offers only its test sample: an upload has no swatch or signal block to check against; nor does a
    dataset of other images than 28×28 grey digits, which the upload's digit preprocessing makes."""
    st.session_state.pop("sample_index", None)
    sources = SOURCES[:1] if has_masks(dataset) or input_shape(dataset) != (1, 28, 28) else SOURCES
    key = "image_source" if len(sources) > 1 else "image_source_sample"
    source = st.radio("Image source", sources, horizontal=True, key=key, persist_state="session")
    names = class_names(dataset)
    if source == "Test sample":
        x, label, caption = _from_sample(dataset)
        return x.to(DEVICE), label, caption
    if source == "Upload":
        file = st.file_uploader("PNG, JPEG, GIF, WebP, BMP or TIFF", key="upload", max_upload_size=10,
                                type=["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"])
        x = _from_bytes(file.getvalue() if file is not None else None, "uploaded_digit")
    else:
        x = _from_bytes(_drawn(), "drawn_digit")
    if x is None:
        st.info("Upload an image or draw a digit to continue.")
        st.stop()
    label = st.selectbox("True class of this image", range(len(names)), format_func=lambda c: names[c], index=None,
                         placeholder="Which class is it?", key=f"label_{source}", persist_state="session")
    if label is None:  # never assumed: the gradient of the true class's loss needs the true class
        st.info("Choose the image's true class to see its maps and attacks.")
        st.stop()
    return x.to(DEVICE), int(label), f"{source.lower()} (labelled {names[int(label)]})"


def param_widget(param: Param, key: str, default: float):
    """The control a setting's kind asks for, within its registry range; it keeps its value across pages."""
    common = {"key": key, "help": param.help or None, "persist_state": "session"}
    kinds = {
        "bool": lambda: st.toggle(param.label, bool(default), **common),
        "choice": lambda: st.select_slider(param.label, list(param.choices), default, **common),
        "int": lambda: st.slider(param.label, int(param.low), int(param.high), int(default), int(param.step),
                                 **common),
        "float": lambda: st.slider(param.label, float(param.low), float(param.high), float(default),
                                   float(param.step), **common),
    }
    return kinds[param.kind]()


def attack_controls(entry: Attack, key: str, eps_default: float = 0.3, eps_max: float = 0.7,
                    defaults: dict | None = None, eps_per_attack: bool = False) -> tuple[float | None, dict]:
    """ε (for an ε-bounded attack) and one control per registry setting; returns (ε, checked settings).
    `eps_per_attack`: each attack keeps its own ε (where their defaults differ) instead of sharing one."""
    eps = None
    if entry.eps_bounded:
        eps_key = f"{key}_{entry.name}_eps" if eps_per_attack else f"{key}_eps"
        eps = st.slider("ε (L∞ budget)", 0.0, eps_max, eps_default, 0.01, key=eps_key, persist_state="session")
    defaults = {p.name: p.default for p in entry.params} | (defaults or {})
    given = {p.name: param_widget(p, f"{key}_{entry.name}_{p.name}", defaults[p.name]) for p in entry.params}
    return eps, entry.settings(given)


class LiveProgress:
    """A Streamlit progress bar fed by a library callback (done, total[, what]), with time spent and left."""

    def __init__(self, text: str, upper_bound: bool = False) -> None:
        self.text, self.upper_bound, self.estimate = text, upper_bound, Estimate()
        self.bar = st.progress(0.0, text=f"{text}: starting…")

    def __call__(self, done: int, total: int, what: str = "") -> None:
        label = f"{self.text}{' · ' + what if what else ''}: {self.estimate.describe(done, total, self.upper_bound)}"
        self.bar.progress(min(done / max(total, 1), 1.0), text=label)

    def close(self) -> None:
        self.bar.empty()

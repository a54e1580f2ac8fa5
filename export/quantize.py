"""int8 for the CPU: static quantization (onnxruntime.quantization, QDQ, per-channel int8 weights, uint8
activations) of exported graphs, calibrated on world frames, and the quality check that decides shipping.

Calibration data (`world_decoder_inputs`): synthetic-world faces of *training* identities, each portrait's
appearance latent with the motion latents of its landmarks under every emotion and several motions, i.e. the
decoder inputs of VAE reconstructions of world frames. Quality (`decoder_psnr_cost`): the same reconstruction
on *held-out* identities, PSNR against the renderer's truth with the fp32 decoder and with the int8 one (what
`instructavatar train quality vae` reports, on these frames); the cost is the fp32 PSNR minus the int8 PSNR.

`quantize_folder(folder, ...)` adds int8 graphs of the named components to an export folder
(`<name>.int8.onnx`, weights embedded: the int8 decoder is 0.9 MB) as a variant beside the fp32 graph in the
manifest (`components.<name>.int8`); `OrtBackend(precision="int8")` runs them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..engine.config import ModelConfig
from ..engine.onnx_manifest import MANIFEST, file_sha256

EMOTION_NAMES = ("happy", "sad", "angry", "surprised", "disgusted", "fear", "contempt", "neutral")
MOTION_NAMES = ("raise_eyebrows", "close_eyes", "open_mouth", "wink_left", "nod", "shake_head")


def world_decoder_inputs(model, cfg: ModelConfig, split: str = "train", identities: int = 6, every: int = 6,
                         seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Decoder inputs {motion (F,M), appearance (F,Ca,a,a)} and the truth frames (F,S,S,3) uint8 for world faces
    of `split` identities under each emotion and motion (torch model: motion encoder and appearance)."""
    import torch

    from ..avatarworld import behaviour
    from ..avatarworld import controls as C
    from ..avatarworld.identity import identity, identity_ids
    from ..avatarworld.render import FaceRenderer
    from ..engine.media.image_io import to_model_input
    from ..training.vae_data import motion_input

    size = cfg.media.image_size
    r, rng, out = FaceRenderer(size), np.random.default_rng(seed), []
    for index in identity_ids(split, identities):
        ident = identity(index)
        ctrls = []
        for name in EMOTION_NAMES:
            ctrls += list(behaviour.emotion_controls(name, 3, 40, rng)[::every])
        for name in MOTION_NAMES:
            try:
                ctrls += list(behaviour.motion_controls(name, 40, rng)[::every])
            except (KeyError, ValueError):
                continue
        truth = np.stack([r.render(ident, c) for c in ctrls])
        x = motion_input(np.stack([r.landmarks(ident, c) for c in ctrls]), size, cfg.vae)
        with torch.inference_mode():
            portrait = torch.from_numpy(to_model_input(r.render(ident, C.neutral())))
            app = model.vae.encode_appearance(portrait).numpy()
            motion = model.vae.encode_motion(torch.from_numpy(x)).numpy()
        for i in range(0, len(motion), 8):
            m = motion[i:i + 8]
            out.append({"motion": m, "appearance": np.repeat(app, len(m), 0), "truth": truth[i:i + 8]})
    return out


def _materialise(folder: Path, name: str, manifest: dict, weights: Path | None) -> bytes:
    """The component's graph with its fed initializers filled in (what the quantizer reads)."""
    import onnx
    from onnx import numpy_helper

    from ..engine.onnx_manifest import fed_initializers
    from ..engine.ort_backend import _load_sources

    proto = onnx.load(str(folder / manifest["components"][name]["file"]), load_external_data=False)
    fed = fed_initializers(manifest, name, _load_sources(manifest, folder, weights), folder / MANIFEST)
    for init in proto.graph.initializer:
        if init.name in fed:
            init.CopyFrom(numpy_helper.from_array(fed[init.name], init.name))
    return proto.SerializeToString()


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        pass


def quantize_component(folder: Path, name: str, weights: Path | None, calibration: list[dict],
                       log=print) -> dict:
    """Write `<name>.int8.onnx` beside the fp32 graph; returns its manifest entry."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    manifest = json.loads((folder / MANIFEST).read_text())
    entry = {k: v for k, v in manifest["components"][name].items() if k != "int8"}
    src = _materialise(folder, name, manifest, weights)
    out = folder / f"{name}.int8.onnx"
    inputs = [t.split(" ")[0] for t in entry["inputs"]]
    feeds = [{k: v for k, v in f.items() if k in inputs} for f in calibration]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / f"{name}.onnx"
        fp32.write_bytes(src)
        quantize_static(str(fp32), str(out), _Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                        calibrate_method=CalibrationMethod.MinMax)
    entry.update(file=out.name, sha256=file_sha256(out), bytes=out.stat().st_size, fed={}, precision="int8",
                 quantization="static QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on "
                              f"{sum(len(f[inputs[0]]) for f in feeds)} world-frame decoder inputs")
    log(f"  {name}: int8 {entry['bytes'] / 1e6:.2f} MB")
    return entry


def quantize_folder(folder: str | Path, cfg: ModelConfig, weights: str | Path | None, model=None,
                    components: tuple[str, ...] = ("decoder",), log=print) -> dict:
    """Quantize `components` of an export folder in place (manifest precision becomes "int8")."""
    folder = Path(folder)
    if model is None:
        from ..engine.loader import build_model

        model = build_model(cfg, weights, random_weights=weights is None)
    calib = world_decoder_inputs(model, cfg, "train")
    manifest = json.loads((folder / MANIFEST).read_text())
    for name in components:            # the int8 graph is a variant beside the fp32 one (OrtBackend precision=)
        manifest["components"][name]["int8"] = quantize_component(folder, name, Path(weights) if weights else None,
                                                                  calib, log)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return float((10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))).mean())


def decoder_psnr_cost(fp32_backend, int8_backend, model, cfg: ModelConfig, identities: int = 6) -> dict:
    """Reconstruction PSNR (dB, vs the renderer's truth) of held-out world faces through both decoders."""
    from ..engine.media.image_io import to_frames

    rows = world_decoder_inputs(model, cfg, "heldout", identities=identities, seed=1)
    got = {"fp32": [], "int8": []}
    truth = np.concatenate([r["truth"] for r in rows])
    for key, be in (("fp32", fp32_backend), ("int8", int8_backend)):
        got[key] = np.concatenate([to_frames(be.decode(r["motion"], r["appearance"])) for r in rows])
    p32, p8 = _psnr(got["fp32"], truth), _psnr(got["int8"], truth)
    return {"frames": len(truth), "psnr_fp32": p32, "psnr_int8": p8, "cost_db": p32 - p8,
            "int8_vs_fp32_psnr": _psnr(got["int8"], got["fp32"])}


def main(argv: list[str] | None = None) -> int:
    """Quantize the shipped demo export's decoder into --out and report quality and speed (1 thread).

        python -m instructavatar.export.quantize --out demo_int8 [--identities 6]
    """
    import argparse
    import shutil
    import time

    from ..engine.config import get_config
    from ..engine.loader import DEMO_ONNX, DEMO_WEIGHTS, build_model
    from ..engine.ort_backend import OrtBackend

    ap = argparse.ArgumentParser(description="int8 decoder for the demo export: quantize, measure PSNR and speed")
    ap.add_argument("--out", required=True)
    ap.add_argument("--identities", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--components", default="decoder")
    args = ap.parse_args(argv)
    cfg = get_config("demo")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(DEMO_ONNX, out)
    model = build_model(cfg, DEMO_WEIGHTS)
    quantize_folder(out, cfg, DEMO_WEIGHTS, model=model, components=tuple(args.components.split(",")))
    fp32 = OrtBackend(out, cfg, weights=DEMO_WEIGHTS, threads=args.threads)
    int8 = OrtBackend(out, cfg, weights=DEMO_WEIGHTS, threads=args.threads, precision="int8")
    report = decoder_psnr_cost(fp32, int8, model, cfg, identities=args.identities)
    rows = world_decoder_inputs(model, cfg, "heldout", identities=1, seed=2)[:4]
    for key, be in (("fp32", fp32), ("int8", int8)):
        be.decode(rows[0]["motion"], rows[0]["appearance"])
        ts = []
        for _ in range(5):
            for r in rows:
                t0 = time.perf_counter()
                be.decode(r["motion"], r["appearance"])
                ts.append((time.perf_counter() - t0) * 1e3 / len(r["motion"]))
        report[f"decoder_ms_per_frame_{key}"] = float(np.median(ts))
    report["speedup"] = report["decoder_ms_per_frame_fp32"] / report["decoder_ms_per_frame_int8"]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

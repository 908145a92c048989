"""Deployable output: ONNX fp32/int8, batch prediction, the MLflow pyfunc model, registry and serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipeline.predict import main as predict_main
from pipeline.runner import run_pipeline
from pipeline.tasks.classification import OnnxPredictor, predict_frame
from tests.conftest import synthetic_frame, tiny_overrides


def use_store(cfg) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{Path(cfg.paths.output_dir).resolve() / 'mlflow.db'}")


def model_uri(cfg, run_dir: Path) -> str:
    use_store(cfg)
    run_id = json.loads((run_dir / "summary.json").read_text())["mlflow_run_id"]
    return MlflowClient().get_run(run_id).data.tags["model_uri"]


def test_int8_export_is_smaller_and_close_to_fp32(lora_run):
    _, _, results = lora_run
    fp32, int8 = results["export"].variants["fp32"], results["export"].variants["int8"]
    assert int8["size_mb"] < fp32["size_mb"]  # the tiny model is mostly embeddings, which stay float
    assert abs(results["export"].metrics()["int8_accuracy_drop_pts"]) <= 10  # tiny random model: loose bound
    assert 0.5 <= int8["agreement_with_fp32"] <= 1.0


def test_a_quantizer_that_cannot_infer_shapes_gives_a_one_line_error(lora_run, tmp_path, monkeypatch):
    """onnxruntime 1.30 fails shape inference on the exported graph; the user gets the field and the fix."""
    import onnxruntime.quantization
    from onnx.shape_inference import InferenceError

    from pipeline.errors import PipelineError
    from pipeline.stages.export import quantize_int8

    def fails(*args, **kwargs):
        raise InferenceError("[ShapeInferenceError] Inferred shape and existing shape differ in dimension 0")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", fails)
    cfg, run_dir, _ = lora_run
    with pytest.raises(PipelineError, match=r"^stage\.export\.int8: onnxruntime .* onnxruntime>=1\.32"):
        quantize_int8(run_dir / "export" / "model.onnx", tmp_path / "model.int8.onnx")
    assert not (tmp_path / "model.int8.onnx").exists()


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "pytorch"])
def test_predict_cli_writes_labels_and_probabilities_and_reports_bad_rows(lora_run, tmp_path, capsys, backend):
    _, run_dir, _ = lora_run
    frame = synthetic_frame(4, seed=3)[["text"]]
    frame.loc[2, "text"] = "   "
    frame.loc[5, "text"] = None
    frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    out = tmp_path / "out.csv"
    assert predict_main([str(run_dir), str(tmp_path / "in.jsonl"), "--output", str(out), "--backend", backend]) == 0
    result = pd.read_csv(out, keep_default_na=False)
    assert len(result) == 12
    assert result.loc[2, "error"] and result.loc[5, "error"] and result.loc[2, "predicted"] == ""
    good = result[result["error"] == ""]
    assert set(good["predicted"]) <= {"alpha", "beta", "gamma"}
    probs = good[["prob_alpha", "prob_beta", "prob_gamma"]].astype(float).sum(axis=1)
    assert ((probs - 1).abs() < 1e-4).all()
    assert "2 row(s) skipped" in capsys.readouterr().err


def test_predict_keeps_blank_csv_lines_as_rows(lora_run, tmp_path):
    _, run_dir, _ = lora_run
    (tmp_path / "in.csv").write_text("text\nalpha words here\n\n   \nbeta words there\n")
    out = tmp_path / "out.csv"
    assert predict_main([str(run_dir), str(tmp_path / "in.csv"), "--output", str(out), "--backend", "onnx"]) == 0
    result = pd.read_csv(out, keep_default_na=False)
    assert len(result) == 4  # one output row per input row, blank lines included
    assert [bool(e) for e in result["error"]] == [False, True, True, False]
    assert result.loc[1, "predicted"] == "" and result.loc[3, "predicted"] != ""


def test_predict_batches_by_length_but_returns_rows_in_input_order(lora_run):
    _, run_dir, _ = lora_run
    predictor = OnnxPredictor(run_dir / "export")
    frame = pd.DataFrame({"text": ["a much longer text " * 8, "short", "", "a medium length text here", "mid"]})
    batched = predict_frame(predictor, frame, "text", batch_size=2)
    for i in (0, 1, 3, 4):  # each row alone: no padding, no neighbours
        alone = predict_frame(predictor, frame.iloc[[i]].reset_index(drop=True), "text", batch_size=1)
        assert np.allclose(batched.filter(like="prob_").iloc[i], alone.filter(like="prob_").iloc[0], atol=1e-5)
    assert batched.loc[2, "error"] and batched["text"].tolist() == frame["text"].tolist()


def test_predict_cli_bad_arguments_exit_2(lora_run, tmp_path, capsys):
    _, run_dir, _ = lora_run
    synthetic_frame(2)[["text"]].to_csv(tmp_path / "in.csv", index=False)
    assert predict_main([str(run_dir), str(tmp_path / "in.csv"), "--text-column", "body"]) == 2
    assert "error: --text-column: column 'body' not in input" in capsys.readouterr().err
    assert predict_main([str(tmp_path / "nope"), str(tmp_path / "in.csv")]) == 2
    for size in ("0", "-3", "many"):  # argparse's usage line, then one error line, exit 2
        with pytest.raises(SystemExit) as stopped:
            predict_main([str(run_dir), str(tmp_path / "in.csv"), "--batch-size", size])
        assert stopped.value.code == 2
        assert f"argument --batch-size: expected a positive integer, got '{size}'" in capsys.readouterr().err


def test_pyfunc_model_loads_and_predicts(lora_run):
    cfg, run_dir, _ = lora_run
    model = mlflow.pyfunc.load_model(model_uri(cfg, run_dir))
    out = model.predict(pd.DataFrame({"text": ["apple banana cherry the", "engine wheel brake a"]}))
    assert list(out["predicted"]) == ["alpha", "beta"]
    assert model.metadata.signature is not None


def test_register_puts_the_model_in_the_registry(tmp_path, tiny_models, synthetic_csv, compose_config):
    overrides = [
        *tiny_overrides(tiny_models["bert"], synthetic_csv, tmp_path),
        "stages=[split,tokenize,train,export]",
        "tracking.register=true",
        "tracking.model_name=tiny-topics",
        "stage.export.int8=false",
    ]
    cfg = compose_config(overrides)
    run_pipeline(cfg, tmp_path / "run")
    use_store(cfg)
    versions = MlflowClient().search_model_versions("name='tiny-topics'")
    assert len(versions) == 1
    texts = pd.DataFrame({"text": ["violin piano flute", "apple banana", "engine wheel brake"]})
    registered = mlflow.pyfunc.load_model("models:/tiny-topics/1").predict(texts)
    exported = predict_frame(OnnxPredictor(tmp_path / "run" / "export"), texts, "text", 8)
    assert registered["predicted"].tolist() == exported["predicted"].tolist()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_models_serve_answers_on_loopback(lora_run, tmp_path):
    cfg, run_dir, _ = lora_run
    uri, port = model_uri(cfg, run_dir), free_port()
    # The server execs `uvicorn` from PATH: the venv's bin/, as in an activated venv.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(), "PATH": path}
    command = ["mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", *command], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        body = json.dumps({"dataframe_records": [{"text": "drum violin the"}]}).encode()
        headers = {"Content-Type": "application/json"}
        deadline, answer = time.monotonic() + 90, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, headers=headers)
                answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
            except OSError:
                time.sleep(1)
        assert answer is not None, log_path.read_text()[-3000:]
        local = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": ["drum violin the"]}))
        served = answer["predictions"][0]
        assert served["predicted"] == local["predicted"].iloc[0]  # the server answers what the model says
        assert abs(served["prob_gamma"] - local["prob_gamma"].iloc[0]) < 1e-6
    finally:
        server.terminate()
        server.wait(timeout=30)

"""The Python package against the command line: same outputs bit for bit, same counters, the
library's errors as exceptions. Needs the `signgd` binary built (`cargo build --release`); its
path may be given in SIGNGD_BIN."""

import csv
import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import signgd

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
IMAGES = FIXTURES / "data" / "fashion-mnist-test-1000-images-idx3-ubyte.gz"
LABELS = FIXTURES / "data" / "fashion-mnist-test-1000-labels-idx1-ubyte.gz"
BIN = Path(os.environ.get("SIGNGD_BIN", ROOT / "target" / "release" / "signgd"))


def fashion_mnist():
    """The bundled images as float64 [N, 1, 28, 28] in [0, 1], as the command line reads them."""
    raw = gzip.open(IMAGES, "rb").read()
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return pixels.astype(np.float64) / 255.0


def fashion_mnist_labels():
    """The bundled labels as integers."""
    return np.frombuffer(gzip.open(LABELS, "rb").read(), dtype=np.uint8, offset=8).astype(np.int64)


def run(*args):
    subprocess.run([str(BIN), "run", *args], check=True, cwd=ROOT, capture_output=True)


def command_json(*args):
    done = subprocess.run([str(BIN), *args], check=True, cwd=ROOT, capture_output=True)
    return json.loads(done.stdout)


def test_outputs_and_counters_equal_the_command_line(tmp_path):
    model = FIXTURES / "models" / "resnet.onnx"
    dump, report = tmp_path / "snn.npy", tmp_path / "report"
    run("--model", str(model), "--data", str(IMAGES), "--limit", "40", "--timesteps", "8,32", "--threads", "2",
        "--dump-outputs", str(dump), "--report", str(report))
    x = fashion_mnist()
    # Without --calibration the command line calibrates on the first 256 inputs of --data.
    net = signgd.convert(model, calibration=x[:256], threads=2)
    result = net.simulate(x[:40], timesteps=[8, 32], threads=2)
    assert result["timesteps"] == [8, 32]
    expected = np.load(dump)
    for k, t in enumerate([8, 32]):
        assert result["outputs"][t].dtype == np.float32
        assert np.array_equal(result["outputs"][t], expected[k]), f"outputs at T = {t}"
    with open(report / "populations.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["timesteps"] == "32"]
    assert rows, "populations.csv has rows for T = 32"
    for row in rows:
        counts = result["counters"][32][row["name"]]
        assert counts["spikes"] == int(row["spikes"]), row["name"]
        assert counts["synaptic_events"] == int(row["synaptic_events"]), row["name"]


def test_results_do_not_depend_on_threads():
    x = fashion_mnist()[:6]
    net = signgd.convert(FIXTURES / "models" / "mlp.onnx")
    one = net.simulate(x, timesteps=[16], threads=1, precision="f64")
    two = net.simulate(x, timesteps=[16], threads=2, precision="f64")
    assert one["outputs"][16].dtype == np.float64
    assert np.array_equal(one["outputs"][16], two["outputs"][16])
    assert one["counters"] == two["counters"]


def test_summary_describes_the_network():
    net = signgd.convert(FIXTURES / "models" / "mlp.onnx")
    summary = net.summary()
    assert summary["neurons"] == net.neurons
    assert summary["input_shape"] == net.input_shape == [1, 28, 28]
    assert net.output_size == 10
    assert "mlp" not in repr(net) and "neurons" in repr(net)


def test_missing_file_and_malformed_model_raise_with_the_message(tmp_path):
    missing = tmp_path / "absent.onnx"
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        signgd.convert(missing)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    with pytest.raises(signgd.SigngdError, match="not a valid ONNX model"):
        signgd.convert(broken)
    with pytest.raises(signgd.SigngdError, match="calibration"):
        signgd.convert(FIXTURES / "models" / "resnet.onnx")  # ReLUs need calibration inputs
    net = signgd.convert(FIXTURES / "models" / "mlp.onnx")
    with pytest.raises(signgd.SigngdError, match="does not fit"):
        net.simulate(np.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="timesteps"):
        net.simulate(np.zeros((1, 1, 28, 28)), timesteps=[])


def test_report_writes_the_command_lines_report(tmp_path):
    model = FIXTURES / "models" / "resnet.onnx"
    cli = tmp_path / "cli"
    run("--model", str(model), "--data", str(IMAGES), "--labels", str(LABELS), "--limit", "40",
        "--timesteps", "8,32", "--threads", "2", "--report", str(cli))
    x, y = fashion_mnist(), fashion_mnist_labels()
    net = signgd.convert(model, calibration=x[:256], threads=2)
    outcome = net.report(tmp_path / "py", x[:40], labels=y[:40], timesteps=[8, 32], threads=2)
    for name in ["report.json", "report.md", "report.html", "accuracy.csv", "populations.csv"]:
        assert (tmp_path / "py" / name).is_file(), name
    # The same network, and the same counters, energy and accuracy per population and checkpoint.
    fingerprint = command_json("run", "--model", str(model), "--data", str(IMAGES), "--limit", "2",
                               "--timesteps", "4", "--json", "--fingerprint")["network"]["fingerprint"]
    assert net.fingerprint() == fingerprint
    assert signgd.convert(model, calibration=x[256:512]).fingerprint() != fingerprint
    assert (tmp_path / "py" / "populations.csv").read_bytes() == (cli / "populations.csv").read_bytes()
    expected = json.loads((cli / "report.json").read_text())
    written = json.loads((tmp_path / "py" / "report.json").read_text())
    assert written["accuracy"] == expected["accuracy"]
    assert outcome["schema_version"] == expected["run"]["schema_version"] == 1
    assert outcome["checkpoints"] == expected["run"]["checkpoints"]
    assert outcome["network"] == expected["run"]["network"]
    assert outcome["ann_accuracy"] == expected["run"]["ann_accuracy"] > 0.5
    assert outcome["report"] == str(tmp_path / "py")
    # An existing report is replaced only with force=True.
    with pytest.raises(signgd.SigngdError, match="force"):
        net.report(tmp_path / "py", x[:4], timesteps=[8])
    assert net.report(tmp_path / "py", x[:4], timesteps=[8], force=True)["data"]["inputs"] == 4


def test_report_refuses_labels_that_do_not_fit(tmp_path):
    net = signgd.convert(FIXTURES / "models" / "mlp.onnx")
    x = fashion_mnist()[:3]
    with pytest.raises(ValueError, match="3 samples"):
        net.report(tmp_path / "r", x, labels=[1, 2])
    with pytest.raises(ValueError, match="label 10 at index 1"):
        net.report(tmp_path / "r", x, labels=[1, 10, 2])
    assert not (tmp_path / "r").exists()


def test_feasibility_maps_as_the_command_line_does():
    model = FIXTURES / "models" / "resnet.onnx"
    expected = command_json("feasibility", "--model", str(model), "--json")["targets"]
    x = fashion_mnist()
    net = signgd.convert(model, calibration=x[:256])
    # The command line simulates the first 16 inputs for the chips with an event budget.
    reports = net.feasibility("all", x[:16], threads=2)
    assert [r["target"] for r in reports] == [r["target"] for r in expected]
    assert reports == expected
    loihi = net.feasibility("loihi")
    assert len(loihi) == 1 and loihi[0] == next(r for r in expected if r["target"] == "loihi")
    with pytest.raises(signgd.SigngdError, match="nochip"):
        net.feasibility("nochip")

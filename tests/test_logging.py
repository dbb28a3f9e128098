import os

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, WandbLogger  # noqa: E402

from lightning_bestpractices._logging import log_figure, log_table  # noqa: E402
from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run  # noqa: E402


def test_figure_and_table_reach_wandb_offline_and_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="t", save_dir=str(tmp_path), offline=True)
    trainer = L.Trainer(logger=logger, max_epochs=1, enable_progress_bar=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = log_figure(trainer, "diag/curve", fig)
    csv = log_table(trainer, "report", ["layer", "std"], [["fc1", 1.0], ["fc2", 0.5]])
    logger.experiment.finish()
    assert png.is_file() and png.name == "diag_curve.png" and csv.read_text().startswith("layer,std")
    run = read_offline_run(find_offline_runs(tmp_path)[0], wait=120)
    assert run.summary["diag/curve"]["_type"] == "images/separated"
    assert run.summary["report"]["_type"] == "table-file"
    assert os.path.dirname(png) == str(run.files_dir)


def test_csv_logger_keeps_png_in_its_log_dir(tmp_path):
    trainer = L.Trainer(logger=CSVLogger(tmp_path), max_epochs=1, enable_progress_bar=False)
    fig, _ = plt.subplots()
    path = log_figure(trainer, "x", fig)
    assert path.parent == tmp_path / "lightning_logs" / "version_0" and path.is_file()


def test_tensorboard_logger_gets_the_figure(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path)
    trainer = L.Trainer(logger=logger, max_epochs=1, enable_progress_bar=False)
    fig, _ = plt.subplots()
    path = log_figure(trainer, "boundary", fig)
    logger.experiment.flush()
    events = EventAccumulator(str(logger.log_dir))
    events.Reload()
    assert "boundary" in events.Tags()["images"] and path.is_file()

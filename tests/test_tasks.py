import lightning as L
import pytest
import torch

from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.models import MLP
from lightning_bestpractices.tasks import Classifier


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": -0.1}, r"`lr` must be > 0, got -0.1"),
        ({"lr": 0.0}, r"`lr` must be > 0, got 0.0"),
        ({"weight_decay": -1.0}, r"`weight_decay` must be >= 0, got -1.0"),
        ({"num_classes": 1}, r"`num_classes` must be >= 2, got 1"),
    ],
)
def test_classifier_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Classifier(MLP(), **kwargs)


def test_multiclass_fit_logs_epoch_metrics_and_predicts_probabilities():
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=64)
    model = Classifier(MLP(64, [64], 10, dropout=0.1), num_classes=10, lr=0.01)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, dm)
    m = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(m)
    assert float(m["val/acc"]) > 0.8
    # the cosine schedule spans the run: after 3 of 3 epochs the LR is back at its minimum (0)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    probs = torch.cat(trainer.predict(model, dm))
    assert probs.shape[1] == 10 and torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)


def _reference(model, batches):
    """Sample-weighted mean loss and accuracy computed straight from the batches."""
    with torch.no_grad():
        logits = [model(x) for x, _ in batches]
    correct = sum(((lg > 0).float() == y).sum() for lg, (_, y) in zip(logits, batches))
    loss = sum(model.loss_fn(lg, y) * len(y) for lg, (_, y) in zip(logits, batches))
    n = sum(len(y) for _, y in batches)
    return float(loss / n), float(correct / n)


@pytest.mark.parametrize("every", [1, 3, 100])
def test_buffered_metric_updates_equal_a_straight_computation(every):
    torch.manual_seed(0)
    model = Classifier(MLP(2, [8], 1, dropout=0.0), metric_update_every=every).eval()
    batches = [(torch.randn(n, 2), (torch.rand(n, 1) > 0.5).float()) for n in (16, 16, 16, 16, 5)]
    # a batch whose logits all lie in [0, 1]: torchmetrics would read them as probabilities and threshold at 0.5
    with torch.no_grad():
        model.net.net[-1].bias.fill_(0.5)
        model.net.net[-1].weight.mul_(1e-3)
    for b in batches:
        model._step(b, "val")
        assert len(model._pending["val"]) < every, "the buffer is flushed every `metric_update_every` batches"
    model._flush("val")
    loss, acc = _reference(model, batches)
    assert float(model.mean_loss["val_"].compute()) == pytest.approx(loss, rel=1e-6)
    assert float(model.acc["val_"].compute()) == pytest.approx(acc)


def test_fused_adamw_and_lightning_hook_names():
    seen = []

    class Probe(Classifier):
        def training_step(self, batch, batch_idx):
            seen.append(self._current_fx_name)
            self.log("probe", 1.0)  # needs the hook name Lightning sets on the module around every hook
            return super().training_step(batch, batch_idx)

    dm = DigitsDataModule(batch_size=128)
    results = {}
    for fused in (None, True):
        torch.manual_seed(0)
        # no BatchNorm: a bias in front of BN gets a ~0 gradient, which Adam's normalisation turns into rounding noise
        model = Probe(MLP(64, [16], 10, dropout=0.0, norm="none"), num_classes=10,
                      optim={"options": {"fused": fused}}, metric_update_every=2)
        trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model, dm)
        assert trainer.optimizers[0].defaults["fused"] is fused
        assert "_current_fx_name" in vars(model) and "_current_fx_name" not in dict(model.named_modules())
        results[fused] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert set(seen) == {"training_step"}
    # the fused kernel applies the same update; only the rounding differs
    torch.testing.assert_close(results[True], results[None], rtol=1e-5, atol=1e-6)


def test_metric_update_every_bad_input():
    with pytest.raises(ValueError, match=r"`metric_update_every` must be >= 1, got 0"):
        Classifier(MLP(), metric_update_every=0)


def test_default_optim_has_no_decay_on_norms_and_biases_and_a_cosine_schedule():
    model = Classifier(MLP(2, [8], 1, norm="batch"), optim={"lr": 0.05})
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    x = torch.randn(32, 2)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, :1] > 0).float()), batch_size=8)
    trainer.fit(model, data)
    opt = trainer.optimizers[0]
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert type(opt).__name__ == "AdamW" and names == {"net.net.0.weight", "net.net.4.weight"}  # Linear weights only
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups if g["name"] == "decay")
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]  # cosine over the 8 real steps ends at 0


def test_final_lr_above_peak_lr_fails_at_construction():
    with pytest.raises(ValueError, match=r"`final_lr` \(0.5, the last-step LR of schedule 'cosine'\) must not be above the peak `lr` \(0.01\)"):
        Classifier(MLP(), optim={"schedule": {"name": "cosine", "final_lr": 0.5}})


def test_label_smoothing_is_torch_cross_entropy_option_and_validated():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 10), torch.randint(0, 10, (8,))
    smooth = Classifier(MLP(64, [8], 10), num_classes=10, label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(smooth.loss_fn(logits, target), expected)
    # binary: one logit with smoothed BCE equals two logits [0, z] with smoothed cross-entropy
    z, y = torch.randn(8, 1), torch.randint(0, 2, (8, 1)).float()
    binary = Classifier(MLP(2, [8], 1), num_classes=2, label_smoothing=0.2)
    two = torch.cat([torch.zeros_like(z), z], 1)
    reference = torch.nn.functional.cross_entropy(two, y.long().view(-1), label_smoothing=0.2)
    torch.testing.assert_close(binary.loss_fn(z, y), reference)
    assert type(Classifier(MLP(2, [8], 1)).loss_fn) is torch.nn.BCEWithLogitsLoss, "no smoothing: the plain loss"
    for bad in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(ValueError, match="`label_smoothing` must be in \\[0, 1\\)"):
            Classifier(MLP(), label_smoothing=bad)

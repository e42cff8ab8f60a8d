"""Search-space declarations (``Param``) and their place in the family registry."""

from __future__ import annotations

import pytest

from recfit.config import RatingConfig
from recfit.errors import ConfigError
from recfit.models.baseline import BaselineOnly, fit_closed_form
from recfit.models.registry import Family, register_family, sized_build, unregister_family
from recfit.models.search import Param


def test_param_ranges_and_choices() -> None:
    assert Param(0.1, 1.0).kind == "float"
    assert Param(1, 5, integer=True).contains(3) and not Param(1, 5, integer=True).contains(2.5)
    assert Param(choices=["a", "b"]).choices == ("a", "b")
    for bad in (
        lambda: Param(2.0, 1.0),
        lambda: Param(0.0, 1.0, log=True),
        lambda: Param(),
        lambda: Param(0.0, 1.0, choices=("x",)),
        lambda: Param(choices=()),
    ):
        with pytest.raises(ConfigError, match="expected"):
            bad()


class _OwnFit(BaselineOnly):
    """A baseline variant whose own fit reads ``epochs`` and ``lr`` (test family)."""

    def __init__(self, n_users: int, n_items: int, epochs: int = 3, lr: float = 0.1,
                 **kw: object) -> None:  # fmt: skip
        super().__init__(n_users, n_items, **kw)  # type: ignore[arg-type]
        self.epochs, self.lr = epochs, lr


def test_closed_form_family_reads_trainer_fields_it_lists() -> None:
    fam = Family(
        name="own_fit_test", task="rating", model_class=_OwnFit, output="rating",
        reads=frozenset({"epochs", "lr"}), trainers=("closed_form",), adapter="dot",
        closed_form=fit_closed_form, defaults={}, build=sized_build(_OwnFit),
        search={"lr": Param(1e-3, 1.0, log=True)},
    )  # fmt: skip
    register_family(fam)
    try:
        cfg = RatingConfig(model="own_fit_test")
        assert cfg.trainer == "closed_form"
        assert cfg.applies("epochs") and cfg.applies("lr")
        assert not cfg.applies("wd")  # the family does not read it
        assert not RatingConfig(model="baseline").applies("epochs")
    finally:
        unregister_family("own_fit_test")


def test_search_entries_must_be_params() -> None:
    with pytest.raises(ConfigError, match="Param"):
        register_family(
            Family(
                name="bad_search_test",
                task="rating",
                model_class=_OwnFit,
                output="rating",
                reads=frozenset(),
                trainers=("closed_form",),
                adapter="dot",
                closed_form=fit_closed_form,
                defaults={},
                build=sized_build(_OwnFit),
                search={"lr": (0.1, 1.0)},  # type: ignore[dict-item]
            )
        )


def test_every_declared_space_names_config_fields_around_their_defaults() -> None:
    """For each registered family with a search space: every entry is a field of its task's
    config that applies to the family, and the family's resolved default lies in range."""
    from recfit.config import validate_config
    from recfit.models.registry import families

    searched = [f for f in families() if f.search]
    assert searched
    for fam in searched:
        cfg = validate_config({"task": fam.task, "model": fam.name}).resolve_model(False)
        for name, p in fam.search.items():
            assert name in type(cfg).model_fields, (fam.name, name)
            assert cfg.applies(name), (fam.name, name)
            assert p.contains(getattr(cfg, name)), (fam.name, name, getattr(cfg, name))

"""The attacks' declared option tables: they match the constructors, and make_config checks values against them."""
import inspect

import pytest

from asdkit.attacks import ATTACKS, attack_options, check_attack_options, make_attack
from asdkit.config import make_config

# One value out of the declared range for one option of every attack.
BAD = {
    "badnets": ("size", 0),
    "blend": ("ratio", 0),
    "wanet": ("k", 1),
    "sig": ("delta", 300),
    "trojan": ("size", 2),
    "clb": ("corners", 2),
    "iab": ("p_attack", 0.5),
    "refool": ("candidates", 0),
    "adaptive-patch": ("test_alpha", 1.5),
    "asd-adaptive-grad": ("iterations", 0),
    "asd-adaptive-feat": ("epsilon", 256),
}


def keyword_defaults(cls) -> dict:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_every_attack_has_a_bad_value_here():
    assert set(BAD) == set(ATTACKS)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_declared_options_match_the_constructor(name):
    cls = ATTACKS[name]
    declared = {o.name: o.default for o in cls.options}
    constructor = keyword_defaults(cls)
    seeded = constructor.pop("seed", None) is not None
    assert list(declared) == list(constructor)  # the same names, in the constructor's order
    for key, default in constructor.items():
        assert declared[key] == default and type(declared[key]) is type(default), key
    assert all(o.accepts(o.default) and o.doc for o in cls.options)
    assert attack_options(name) == tuple(declared) + (("seed",) if seeded else ())


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_bad_value_is_refused_by_make_config_before_any_data_loads(name, monkeypatch):
    def boom(*args, **kwargs):
        pytest.fail("data loaded")

    monkeypatch.setattr("asdkit.data.load", boom)
    monkeypatch.setattr("asdkit.data.loaders.load", boom)
    option, bad = BAD[name]
    with pytest.raises(ValueError, match=f"The 'attack_args' field's option '{option}' of attack '{name}' must be .*Got {bad!r} instead"):
        make_config("smoke", overrides={"attack": name, f"attack.{option}": bad})


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_unknown_option_and_seed_are_refused(name):
    for key in ("nope", "seed"):
        with pytest.raises(ValueError, match=f"option\\(s\\) \\['{key}'\\] that attack '{name}' does not take"):
            make_config("smoke", overrides={"attack": name, f"attack.{key}": 1})


def test_the_message_names_field_attack_allowed_values_and_value():
    with pytest.raises(ValueError) as err:
        check_attack_options("badnets", {"size": 0})
    assert str(err.value) == "The 'attack_args' field's option 'size' of attack 'badnets' must be None or an int in [1, inf). Got 0 instead."
    with pytest.raises(ValueError, match="'name' parameter of check_attack_options"):
        check_attack_options("nope", {})


def test_good_values_pass_and_image_size_checks_stay_with_the_constructor():
    config = make_config("smoke", overrides={"attack": "badnets", "attack.size": 3, "attack.location": (4, 5), "attack.value": 0})
    assert config.attack_args == {"size": 3, "location": (4, 5), "value": 0}
    check_attack_options("badnets", {"location": [0, 0]})  # a JSON config's pair is a list
    check_attack_options("adaptive-patch", {"alphas": (0.5, 1.0), "k": 2})
    with pytest.raises(ValueError, match="'location' field's|field's option 'location'"):
        check_attack_options("trojan", {"location": "middle"})
    check_attack_options("badnets", {"size": 40})  # larger than a 32×32 image: only the constructor knows the size
    with pytest.raises(ValueError, match="'size' parameter of BadNets"):
        make_attack("badnets", (3, 32, 32), size=40)

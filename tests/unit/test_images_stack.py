"""Images in the stack file without root: the `build` key, and `up` recreating a container
whose image tag now names another image."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import config, plan
from supervisor.errors import ConfigError


def load(tmp_path: Path, body: str) -> config.Stack:
    (tmp_path / "stack.toml").write_text(body)
    return config.load_stack(tmp_path / "stack.toml", {}, project="shop")


def test_build_key_tags_project_and_name(tmp_path: Path) -> None:
    stack = load(tmp_path, '[containers.Web]\nbuild = "app"\n\n'
                           '[containers.api]\nbuild = "./api"\nimage = "localhost:5000/api:2"\n')
    web, api = stack.containers["Web"], stack.containers["api"]
    assert (web.build, web.image) == (str(tmp_path / "app"), "shop_web")
    assert (api.build, api.image) == (str(tmp_path / "api"), "localhost:5000/api:2")


@pytest.mark.parametrize("extra", ['rootfs = "/srv"', 'image = "host"'])
def test_build_makes_an_image(tmp_path: Path, extra: str) -> None:
    with pytest.raises(ConfigError, match=r"containers\.web\.build: 'build' makes an image"):
        load(tmp_path, f'[containers.web]\nbuild = "app"\n{extra}\n')


def test_a_moved_tag_recreates() -> None:
    cfg = config.container_from_mapping("web", {"image": "app:1"}, where="t")
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert not plan.changed(cfg, cfg, old_image=a, new_image=a)
    assert plan.changed(cfg, cfg, old_image=a, new_image=b)
    # unknown on either side (a rootfs container, a tag not in the store): the config decides
    assert not plan.changed(cfg, cfg, old_image=a, new_image=None)
    assert not plan.changed(cfg, cfg)

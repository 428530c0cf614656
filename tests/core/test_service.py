"""Services: their settings section from the one config file, one start and one stop however
many tools they have, status per service, and what the registry refuses."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict
from toolfleet.core import Settings
from toolfleet.core.executor import Executor
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.service import Service, load_service
from toolfleet.core.settings import ServiceSettings
from toolfleet.core.tool import CallContext, Tool, ToolResult


class ToySettings(ServiceSettings):
    """The toy service's section."""

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_TOY_", extra="forbid")
    section: ClassVar[str] = "toy"

    greeting: str = "hello"
    size: int = 1


class NoArgs(BaseModel):
    """No arguments."""


class Greet(Tool[NoArgs]):
    name = "greet"
    description = "Says the configured greeting."
    Arguments = NoArgs

    async def call(self, args: NoArgs, ctx: CallContext) -> ToolResult:
        assert isinstance(self.owner, Toy)
        return ToolResult.text(self.owner.settings.greeting)


class Wave(Greet):
    name = "wave"


class Toy(Service[ToySettings]):
    """Counts its starts and stops."""

    name = "toy"
    Settings = ToySettings
    events: ClassVar[list[str]] = []

    def tools(self) -> list[Tool]:
        return [Greet(self), Wave(self)]

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    def status(self) -> dict[str, object]:
        return {"size": self.settings.size}


def toy_factory(settings: Settings) -> Toy:
    """An entry point may name a factory of the settings instead of the class."""
    return Toy.configured(settings)


def not_a_service(settings: Settings) -> list[Tool]:
    return []


def entry_point(target: str) -> EntryPoint:
    return EntryPoint(name="toy", value=f"{__name__}:{target}", group="toolfleet.services")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOOLFLEET_CONFIG", "TOOLFLEET_TOY_GREETING", "TOOLFLEET_TOY_SIZE"):
        monkeypatch.delenv(name, raising=False)
    Toy.events.clear()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_section_comes_from_the_file_the_process_was_started_with(tmp_path, monkeypatch):
    named = write(tmp_path / "env.toml", '[toy]\ngreeting = "from env file"\n')
    given = write(tmp_path / "given.toml", 'port = 9005\n[toy]\ngreeting = "from --config"\n')
    monkeypatch.setenv("TOOLFLEET_CONFIG", str(named))
    # --config (Settings.config_file) wins over TOOLFLEET_CONFIG, for the service too
    settings = Settings(config_file=given)
    assert settings.port == 9005
    assert Toy.configured(settings).settings.greeting == "from --config"
    # TOOLFLEET_CONFIG alone: the process's settings remember it, and so does the service
    settings = Settings()
    assert settings.config_file == named
    assert Toy.configured(settings).settings.greeting == "from env file"
    assert Toy().settings.greeting == "from env file"  # built with no settings: the same
    # the environment wins over the file
    monkeypatch.setenv("TOOLFLEET_TOY_GREETING", "from environment")
    assert Toy.configured(Settings(config_file=given)).settings.greeting == "from environment"


def test_missing_or_malformed_sections(tmp_path):
    no_section = write(tmp_path / "plain.toml", "port = 9006\n")
    assert Toy.configured(Settings(config_file=no_section)).settings == ToySettings()
    assert Toy.configured(Settings()).settings.greeting == "hello"  # no file at all
    scalar = write(tmp_path / "scalar.toml", 'toy = "not a table"\n')
    with pytest.raises(ValueError, match=r"\[toy\].*must be a table"):
        ToySettings.from_config(scalar)
    typo = write(tmp_path / "typo.toml", "[toy]\ngreetin = 1\n")
    with pytest.raises(ValueError, match="greetin"):
        ToySettings.from_config(typo)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.toml"):
        ToySettings.from_config(tmp_path / "nowhere.toml")


def test_entry_point_names_a_class_or_a_factory(tmp_path):
    config = write(tmp_path / "c.toml", "[toy]\nsize = 7\n")
    settings = Settings(config_file=config)
    for target in ("Toy", "toy_factory"):
        service = load_service(entry_point(target), settings)
        assert isinstance(service, Toy) and service.settings.size == 7
    with pytest.raises(TypeError, match=r"must name a toolfleet\.core\.service\.Service subclass"):
        load_service(entry_point("not_a_service"), settings)


async def test_a_service_starts_and_stops_once_for_all_its_tools():
    toy = Toy(ToySettings(size=3))
    registry = ToolRegistry(toy.tools())
    assert registry.services() == [toy]
    assert [t.service for t in registry] == ["toy", "toy"]  # the name comes from the service
    assert registry.status() == {"toy": {"size": 3}}
    executor = Executor(registry)
    await executor.start()
    await executor.stop()
    assert Toy.events == ["start", "stop"]


async def test_a_failed_start_stops_what_started():
    class Broken(Service):
        name = "broken"

        def tools(self) -> list[Tool]:
            return [Wave(self)]

        async def start(self) -> None:
            raise RuntimeError("no pool")

    registry = ToolRegistry([Greet(Toy()), *Broken().tools()])
    with pytest.raises(RuntimeError, match="no pool"):
        await Executor(registry).start()
    assert Toy.events == ["start", "stop"]


def test_the_registry_refuses_what_would_go_wrong_silently():
    first, second = Toy(), Toy()
    with pytest.raises(ValueError, match="another instance of the toy service"):
        ToolRegistry([Greet(first), Wave(second)])

    class Reporting(Greet):
        name = "reporting"

        def status(self) -> dict[str, object]:
            return {}

    with pytest.raises(TypeError, match="a service reports its status"):
        ToolRegistry([Reporting()])
    with pytest.raises(TypeError, match="created with its Service"):
        Greet(Settings())  # type: ignore[arg-type]


def test_discover_serves_only_the_services_and_tools_asked_for():
    registry = ToolRegistry.discover(Settings(services=["sql"], tools=["sql_schema"]))
    assert registry.names() == ["sql_schema"]
    assert [s.name for s in registry.services()] == ["sql"]

"""Scheduled deployments of the project's flows, from a YAML file, served by Prefect's `serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration.flows import curate

FLOWS = {"curate": curate}


class DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Deployment name; runs are triggered as `<flow>/<name>`.")
    flow: Literal["curate"] = Field("curate", description="Which flow of the project this deploys.")
    cron: str | None = Field(None, description="Cron schedule (e.g. '0 3 * * *'); none: runs only when triggered.")
    timezone: str = Field("UTC", description="Time zone of the cron schedule.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="The flow's parameters for every run.")
    description: str | None = Field(None, description="Shown in the Prefect UI.")
    tags: list[str] = Field(default_factory=list)


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: list[DeploymentSpec] = Field(description="Deployments to register and serve.")


def load_serve_config(path: str | Path) -> ServeConfig:
    path = Path(path)
    try:
        return ServeConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no such file") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def runner_deployments(config: ServeConfig) -> list:
    """Prefect RunnerDeployments: each flow with its schedule and parameters."""
    out = []
    for d in config.deployments:
        schedule: dict[str, Any] = {}
        if d.cron:
            from prefect.schedules import Cron

            schedule["schedules"] = [Cron(d.cron, timezone=d.timezone)]
        out.append(
            FLOWS[d.flow].to_deployment(
                name=d.name, parameters=d.parameters, description=d.description, tags=d.tags, **schedule
            )
        )
    return out


def serve_deployments(config: ServeConfig, limit: int | None = None) -> None:
    """Register the deployments with the Prefect API and run their scheduled and triggered runs until stopped."""
    from prefect import serve

    serve(*runner_deployments(config), limit=limit)

"""``/v1/training-runs``: federated training the coordinator runs over the members' stores.

``POST`` checks the parties and starts the run in the background (202); ``GET`` follows it
(stage, epoch, then the registered model version and its metrics, or the error that stopped
it). The coordinator plays the arbiter; it never receives a feature, label or weight
(docs/training.md). A finished run's model is a *candidate* in ``/v1/models`` unless the run
asked to promote it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from coordinator.api.deps import Admin, AdminOrRegulator, Context
from coordinator.api.schemas import AUTH_ERRORS, error_responses
from coordinator.training.runs import TrainingRun, TrainingRunConfig
from fedcredit.errors import ErrorCode, InvalidRequestError
from fedcredit.training_spec import BinningSpec
from mpc.vector_he import EngineName
from scoring.logistic import GdSettings

router = APIRouter(prefix="/v1/training-runs", tags=["training"])
RunId = Annotated[str, Path(max_length=64, examples=["20261122-201500-a1b2c3"])]
MemberName = Annotated[str, Field(min_length=1, max_length=64)]


class BinningIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"engine": "spark", "max_bins": 10, "min_bin_size": 50, "min_iv": 0.02}]})
    engine: Literal["spark", "exact"] = Field(
        "spark", description="Quantiles with Spark (approxQuantile) or exactly (numpy).")
    max_bins: int = Field(10, ge=2, le=64)
    min_bin_size: int = Field(50, ge=1, description="Smaller bins are merged before any total "
                              "leaves the party, so no bin describes a handful of people.")
    min_iv: float = Field(0.0, ge=0.0, description="Features below this IV are left out.")


class TrainingRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "guest": "bank", "hosts": ["finco", "shop"], "engine": "ckks",
        "binning": {"engine": "spark", "max_bins": 10, "min_bin_size": 50},
        "l2": 0.01, "max_epochs": 30, "test_fraction": 0.3, "min_overlap": 100,
        "promote": False,
    }]})
    guest: MemberName = Field(description="The lender whose labels train the model; the only "
                              "member that can request evaluations with it.")
    hosts: list[MemberName] = Field(min_length=1, max_length=32,
                                    description="Members contributing features.")
    engine: EngineName = Field(EngineName.CKKS, description="ckks (fast) or paillier "
                               "(reference).")
    binning: BinningIn = Field(default_factory=BinningIn)
    l2: float = Field(0.01, ge=0.0)
    learning_rate: float = Field(4.0, gt=0.0)
    max_epochs: int = Field(30, ge=1, le=500)
    test_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    min_overlap: int = Field(100, ge=1, description="Fewer shared subjects abort the run.")
    split_seed: int | None = Field(None, description="Seed of the guest's train/test split.")
    timeout_s: float = Field(600.0, ge=5.0, le=86_400.0,
                             description="How long a party waits for a peer's next step.")
    promote: bool = Field(False, description="Promote the model for the guest when the run "
                          "succeeds (otherwise it stays a candidate).")

    def to_config(self) -> TrainingRunConfig:
        try:
            return TrainingRunConfig(
                guest=self.guest, hosts=tuple(self.hosts), engine=self.engine,
                binning=BinningSpec(**self.binning.model_dump()),
                gd=GdSettings(l2=self.l2, learning_rate=self.learning_rate,
                              max_epochs=self.max_epochs),
                test_fraction=self.test_fraction, valid_fraction=self.valid_fraction,
                min_overlap=self.min_overlap, split_seed=self.split_seed,
                timeout_s=self.timeout_s, promote=self.promote)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None


class RunErrorOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"code": "PERMISSION_DENIED", "detail": "shop did not join: shop does not take part in "
         "federated training (FEDCREDIT_NODE_TRAINING_ENABLED is false)"}]})
    code: str
    detail: str


class TrainingRunOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "run_id": "20261122-201500-a1b2c3", "state": "succeeded", "stage": "done",
        "actor": "admin", "created_ms": 1795380900000, "finished_ms": 1795380950000,
        "model_version": "trained-20261122-201500-a1b2c3", "error": None,
        "summary": {"rows": {"bank": 4200, "finco": 3900}, "epochs": 14,
                    "metrics": {"test_auc": 0.77, "guest_only_auc": 0.70}},
        "config": {"guest": "bank", "hosts": ["finco"]},
    }]})
    run_id: str
    state: Literal["running", "succeeded", "failed"]
    stage: str = Field(description="What the run is doing (or where it stopped).")
    actor: str
    created_ms: int
    finished_ms: int | None
    model_version: str | None = Field(description="The registered model, once it succeeded.")
    error: RunErrorOut | None
    summary: dict[str, Any] = Field(description="Rows per party, epochs, the guest's test "
                                    "metrics (AUC, KS, n), seconds.")
    config: dict[str, Any]


def run_out(run: TrainingRun) -> TrainingRunOut:
    error = (RunErrorOut(code=run.error_code, detail=run.error_detail or "")
             if run.error_code else None)
    return TrainingRunOut(
        run_id=run.run_id, state=run.state.value, stage=run.stage, actor=run.actor,
        created_ms=run.created_ms, finished_ms=run.finished_ms,
        model_version=run.model_version, error=error, summary=dict(run.summary),
        config=dict(run.config))


@router.post("", status_code=202, response_model=TrainingRunOut,
             summary="Start a federated training run",
             responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                       ErrorCode.UNKNOWN_MEMBER, ErrorCode.NODE_UNAVAILABLE,
                                       ErrorCode.RESOURCE_CONFLICT))
def start_run(body: TrainingRunIn, ctx: Context, admin: Admin) -> TrainingRunOut:
    """Checks that every party is an active member, records the run and starts it; follow it
    with `GET /v1/training-runs/{run_id}`. One run at a time."""
    return run_out(ctx.training.start(body.to_config(), admin.actor))


@router.get("", response_model=list[TrainingRunOut], summary="List training runs",
            responses=error_responses(*AUTH_ERRORS))
def list_runs(ctx: Context, _: AdminOrRegulator) -> list[TrainingRunOut]:
    """Newest first."""
    return [run_out(r) for r in ctx.training.list()]


@router.get("/{run_id}", response_model=TrainingRunOut, summary="One training run",
            responses=error_responses(*AUTH_ERRORS, ErrorCode.INVALID_REQUEST,
                                      ErrorCode.RESOURCE_NOT_FOUND))
def get_run(run_id: RunId, ctx: Context, _: AdminOrRegulator) -> TrainingRunOut:
    return run_out(ctx.training.get(run_id))

"""`run.init_from`: start a run from a finished run's weights, e.g. train KGSF's conversation stage
on a recommender trained once (Algorithm 1 freezes the KG module and recommender there)."""
from __future__ import annotations

from pathlib import Path

from loguru import logger

from crsbench.datasets.provenance import NOT_KEYED
from crsbench.errors import ConfigError
from crsbench.models.base import CRSModel, selected_tasks
from crsbench.run_dir import RunDir
from crsbench.trainer import checkpoint


def _differences(theirs: dict, ours: dict, prefix: str) -> list[str]:
    """'key: theirs -> ours' for every nested setting that differs between two config sections."""
    found = []
    for key in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}.{key}")
        elif a != b:
            found.append(f"{prefix}.{key}: {a!r} -> {b!r}")
    return found


def start_weights(model: CRSModel, model_name: str, dataset_name: str, config: dict) -> None:
    """Load `run.init_from`'s trained weights into `model`, after checking that they cover every
    parameter of the stages `run.tasks` skips (else those would silently stay at initialisation).
    The parameters that only this run's stages train are not loaded: they start fresh."""
    source = config["run"]["init_from"]
    selected = selected_tasks(model, config)
    skipped = [s for s in model.stages() if s.task not in selected]
    if source is None:
        if skipped:
            logger.warning(f"run.tasks skips stages {[s.name for s in skipped]} and run.init_from is not set: "
                           "their parameters stay at initialisation (set run.init_from=RUN_DIR to start "
                           "from a trained run)")
        return
    run = RunDir(Path(source))
    source = run.path
    hint = "run.init_from must be a finished `crsbench run` directory of the same model and dataset"
    if not run.meta_file.exists() or not run.weights.exists():
        raise ConfigError(f"run.init_from: {source} is not a finished run (need {RunDir.META} and "
                          f"{RunDir.WEIGHTS})", hint=hint)
    meta = run.read_meta()
    if (meta["model"], meta["dataset"]) != (model_name, dataset_name):
        raise ConfigError(f"run.init_from: {source} is a {meta['model']} run on {meta['dataset']}, this run is "
                          f"{model_name} on {dataset_name}", hint=hint)
    saved = run.read_config_today()            # a source saved before a data setting existed used its default
    theirs = saved["data"]
    changed = sorted(k for k in set(theirs) | set(config["data"])
                     if k not in NOT_KEYED and theirs.get(k) != config["data"].get(k))
    if changed:
        raise ConfigError(f"run.init_from: {source} was trained with other data settings ({', '.join(changed)})",
                          hint="use the same data.* settings as the source run")
    differing = _differences(saved["model"], config["model"], "model")
    if differing:
        logger.warning(f"run.init_from: model settings differ from {source}: {'; '.join(differing)} "
                       "(fine for settings of the stages this run trains, e.g. model.copy)")
    weights = checkpoint.load(run.weights)
    own = model.state_dict(keep_vars=True)     # tied tensors appear once per name, as one object
    mismatched = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if mismatched:
        raise ConfigError(f"run.init_from: {len(mismatched)} tensors of {source} have other shapes, e.g. "
                          f"{mismatched[0]}: {tuple(weights[mismatched[0]].shape)} vs "
                          f"{tuple(own[mismatched[0]].shape)}", hint="use the same model.* sizes as the source run")
    # A tensor is known by its identity, not its name: a tied one (the word embeddings of the encoder,
    # the decoder and the output layer) has one name in named_parameters() and several in the state
    # dict, and every alias must follow the parameter's fate.
    aliases: dict[int, list[str]] = {}
    for key, tensor in own.items():
        aliases.setdefault(id(tensor), []).append(key)
    needed = {id(p) for stage in skipped for p in stage.parameters()}
    missing = sorted(aliases[i][0] for i in needed if not any(k in weights for k in aliases[i]))
    if missing:
        raise ConfigError(f"run.init_from: {source} lacks {len(missing)} parameters of the skipped stages, "
                          f"e.g. {missing[0]}", hint=hint)
    # What this run's stages train starts fresh, as in the full pipeline (Algorithm 1 trains the
    # conversation module from scratch, from this build's word2vec vectors): a source that already
    # trained it, or holds another build's embeddings, must not hand it over.
    trained_here = {id(p) for stage in model.stages() if stage.task in selected
                    for p in stage.parameters()} - needed
    fresh = {k for i in trained_here for k in aliases[i]}
    loaded = {k: v for k, v in weights.items() if k in own and k not in fresh}
    model.load_state_dict(loaded, strict=False)
    logger.info(f"initialised {len(loaded)} of {len(own)} tensors from {source}; "
                f"{len(own) - len(loaded)} start fresh ({len(trained_here)} trained by this run's stages)")

"""The files of a run directory (runs/<dataset>/<variant>/<run>), named once for every reader."""

RUN_META = "run.json"          # run id, model, dataset, status, start and end times
CONFIG_FILE = "config.yaml"    # the resolved config the run used
WEIGHTS_FILE = "model.pt"      # the final weights
METRICS_FILE = "metrics.json"  # test metrics, timings and per-stage training summaries

"""Installs crsbench (the framework) and baselines (models that plug in like any third party)."""
from setuptools import find_packages, setup

setup(
    name="crsbench",
    version="0.1.0",
    description="A benchmark framework for conversational recommender systems (KGSF and baselines)",
    python_requires=">=3.10",
    packages=find_packages(include=["crsbench", "crsbench.*", "baselines", "baselines.*"]),
    package_data={"crsbench": ["**/*.yaml"], "baselines": ["*.yaml"]},
    install_requires=[
        "torch>=2.4",
        "torch-geometric>=2.5",
        "fuzzywuzzy>=0.18",
        "python-Levenshtein>=0.25",   # makes fuzzywuzzy's matching fast
        "pyyaml>=6",
        "loguru>=0.7",
        "tensorboard>=2.15",
        "nltk>=3.8",
        "numpy>=1.26",
        "gensim>=4.3",                # word2vec initial embeddings, as the original KGSF code
        "tqdm>=4.66",                 # progress bars
        "platformdirs>=4",            # default data and cache directories per OS
        "scipy>=1.11",                # Welch's t-test and sparse n-gram counts for significance tests
        "matplotlib>=3.8",            # crsbench plot and explain figures (PNG, SVG)
    ],
    # setuptools: tests/test_packaging.py builds a wheel without build isolation (3.12+ venvs lack it)
    extras_require={"test": ["pytest>=8", "setuptools>=70", "ray>=2.9"],   # the Ray sweep test uses a real Ray
                    "ray": ["ray>=2.9"]},                                   # crsbench sweep --executor ray
    entry_points={
        "console_scripts": ["crsbench = crsbench.cli:main"],
        # Every model and dataset is an entry point; our own baselines register exactly as a
        # third-party package would. Each kind is imported only when asked for.
        "crsbench.datasets": [
            "redial = crsbench.datasets.redial",
            "opendialkg = crsbench.datasets.opendialkg",
        ],
        "crsbench.models": [
            "kgsf = crsbench.models.kgsf",
            "popularity = baselines.popularity",
            "context_repeat = baselines.context_repeat",
            "textcnn = baselines.textcnn",
            "redial = baselines.redial_rec",
            "kbrd = baselines.kbrd",
            "transformer = baselines.transformer",
        ],
    },
)

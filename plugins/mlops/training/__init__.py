"""Training stage: training data and model search, tracking, metrics, promotion, the training container.

May import mlops top-level modules, mlops.io and mlops.monitoring (the reference profile)."""

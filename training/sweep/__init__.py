"""`mlp-train sweep`: hidden-layer studies over TrainConfig fields (grid or seeded random)."""

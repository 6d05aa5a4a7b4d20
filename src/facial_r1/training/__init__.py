"""Lightning modules for the training stages, their data, optimisation and the run orchestration."""

"""What the stored runs say: the figures every view shows (run_figures.py), workload labels
(workload_labels.py), costs per run and the SLO answer (compare.py, frontier.py), the cost matrix
(matrix.py) and the batch-1 roofline (roofline.py). Independent of data.travel (import-linter contract
in pyproject.toml)."""

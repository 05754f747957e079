"""What the evaluation computes: the robustness matrix, interpretation runs, masking checks, statistics."""

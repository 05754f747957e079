"""What the evaluation writes: the reproduction document, its claims and verdicts, the HTML report."""

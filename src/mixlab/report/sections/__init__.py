"""The report's sections, one module each: ablation, benchmark, equivalence."""

"""pixcap eval: the model a dataset trains, scored as GenEval, T2I-CompBench and FID do."""

"""The Numenta Anomaly Benchmark (NAB v1.1): results files in NAB's format and NAB's scoring.

``runner.run_eval`` runs a streaming detector over a NAB-layout corpus, writes
``<results>/<detector>/<category>/<detector>_<file>.csv`` files that NAB's own scorer reads
unchanged, and scores them with :mod:`aegis.engine.nab.scoring`, an independent implementation
of the NAB scoring rules (three profiles, threshold optimisation, normalisation).
"""

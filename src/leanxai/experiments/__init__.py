"""Reproduction harnesses: the methods benchmark, the routing systems, the compression runs.

Nothing in the library (core, explainers, threshold, evaluate, compress, route) imports this
package; the CLI commands that reproduce results (benchmark, route eval, demo) and benchmarks/ do.
"""

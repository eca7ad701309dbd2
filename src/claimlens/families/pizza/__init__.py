"""The pizza family: pizza or clock: Zhong et al. 2023's circuits for modular addition (catalogue §3.3)."""

"""Models layer (torch modules): the DeepSTORM-style CNN phi and the conditional DDPM
psi with its noise schedule. Pure torch, no I/O. (Filled in by the models issue.)"""

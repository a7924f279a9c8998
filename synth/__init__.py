"""vlmdata.synth"""

"""The one exception type the faces turn into a one-sentence message."""


class SmlmInputError(ValueError):
    """Bad user input (file, parameter, device): the message is one clear sentence
    naming the problem and what to do. The CLI prints it, napari shows it as a
    notification; neither shows a traceback."""

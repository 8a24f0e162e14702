"""Counts words across all records; for every word seen, emits the word as key and its running
count as value."""

from weir import Output, Processor, processor, state  # noqa: F401 - Processor is the export


@processor
def word_count(record):
    outputs = []
    for word in record.text().split():
        word = word.lower()
        count = state.get(word, 0) + 1
        state.put(word, count)
        outputs.append(Output(str(count), key=word))
    return outputs

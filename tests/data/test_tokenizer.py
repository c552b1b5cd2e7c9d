from transformer_mt.config import TokenizerConfig
from transformer_mt.data.corpus import normalise
from transformer_mt.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, TokenizerPair


def test_round_trip_is_exact_including_special_spaces(sample_pairs, tmp_path):
    tok = TokenizerPair.train(sample_pairs[:2000], TokenizerConfig(vocab_size=800)).tgt
    texts = [fr for _, fr in sample_pairs[2000:2300]] + [
        "Va\u202f!", "Quoi\u00a0?", "Il a dit\u2009: «\u00a0oui\u00a0».", "zéro\u200blargeur", "  espaces   multiples ",
        "emoji 😀 et 日本語 inconnus",
    ]
    for text in texts:
        assert tok.decode(tok.encode(text)) == normalise(text)
    # after saving and loading, the same ids
    tok.save(tmp_path / "t.json")
    again = Tokenizer.load(tmp_path / "t.json")
    assert again.encode(texts[-2]) == tok.encode(texts[-2])


def test_special_spaces_fold_to_plain_space():
    assert normalise("Va\u202f! Quoi\u00a0? a\u2009b ze\u200bro\n") == "Va ! Quoi ? a b zero"


def test_special_ids_are_fixed_and_never_produced_by_text(sample_pairs):
    tok = Tokenizer.train((t for pair in sample_pairs[:500] for t in pair), vocab_size=500)
    assert [tok.hf.token_to_id(t) for t in ("<pad>", "<bos>", "<eos>", "<unk>")] == [PAD, BOS, EOS, UNK]
    text = "<pad> <eos> text"
    ids = tok.encode(text)
    assert not {PAD, BOS, EOS, UNK} & set(ids)  # typed "<eos>" is text, not the EOS token
    assert tok.decode(ids) == text


def test_joint_and_separate_vocabularies(sample_pairs):
    joint = TokenizerPair.train(sample_pairs[:500], TokenizerConfig(vocab_size=600, joint=True))
    assert joint.joint and joint.src is joint.tgt
    separate = TokenizerPair.train(sample_pairs[:500], TokenizerConfig(vocab_size=600, joint=False))
    assert not separate.joint and separate.src.hf.to_str() != separate.tgt.hf.to_str()


def test_the_smallest_vocabulary_the_config_allows_is_the_untrained_one(sample_pairs):
    # config.MIN_VOCAB stands for "special tokens + byte alphabet": asking for less gets exactly that many.
    from transformer_mt.config import MIN_VOCAB
    tok = Tokenizer.train((t for pair in sample_pairs[:200] for t in pair), vocab_size=10)
    assert tok.vocab_size == MIN_VOCAB


def test_source_ids_cut_so_that_eos_keeps_a_position():
    from transformer_mt.data.tokenizer import source_ids

    assert source_ids([7, 8, 9], 5) == [7, 8, 9, EOS]  # fits: nothing cut
    assert source_ids([7, 8, 9, 10], 5) == [7, 8, 9, 10, EOS]  # exactly the model's 5 positions
    assert source_ids([7, 8, 9, 10, 11], 5) == [7, 8, 9, 10, EOS]


def test_translators_note_when_they_cut_a_source_and_print_nothing(sample_pairs, capsys):
    """The note goes back to the caller (a script prints it; a server, whose batches merge requests,
    says it to the request's client in its own words), never to the process's stderr."""
    from transformer_mt.decoding.translator import TextTranslator

    class Encoding(TextTranslator):  # only what encode() needs
        def _search(self, batch, decode, nbest):
            raise NotImplementedError

        def _attention(self, sources, targets):
            raise NotImplementedError

    translator = Encoding()
    translator.tokenizers = TokenizerPair.train(sample_pairs[:500], TokenizerConfig(vocab_size=400))
    translator.max_positions = 6
    five = translator.tokenizers.src.encode("a b c d e")
    assert len(five) == 5
    notes = []
    assert translator.encode(["a b c d e"], notes) == [five + [EOS]] and notes == []
    assert translator.encode(["x", "a b c d e f"], notes) == [translator.encode(["x"])[0], five + [EOS]]
    assert notes == ["warning: sentence 2 has 6 tokens; truncated to the model's 5"]
    assert translator.encode(["a b c d e f"]) == [five + [EOS]]  # no list given: the note is dropped
    assert capsys.readouterr() == ("", "")

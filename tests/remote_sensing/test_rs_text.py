"""Text side: tokenizer training on the real caption corpora, offline translation with a tiny local Marian model."""

from __future__ import annotations

import pytest
from rs_helpers import make_options, read_shards

from clipzoo.core.ingest import IngestError, run_ingest
from clipzoo.remote_sensing.sources import CaptionsSource
from clipzoo.remote_sensing.tokenizer import EOS, corpus_texts, main as tokenizer_main, open_clip_text_cfg, train_tokenizer
from clipzoo.remote_sensing.translate import TranslationError, Translator, main as translate_main, translate_precomp


@pytest.fixture(scope="module")
def corpus(rs_data):
    caps = rs_data / "captions"
    return [caps / "ucm_precomp", caps / "rsitmd_precomp", caps / "rsicd_coco" / "captions_val2017.json"]


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_trained_tokenizer_loads_in_core_and_feeds_open_clip_text(corpus, tmp_path, kind):
    import torch

    from clipzoo.core.models.factory import create_model
    from clipzoo.core.models.tokenizers import get_tokenizer

    texts = list(corpus_texts(corpus))
    assert len(texts) == 1050 + 2260 + 5460
    out = train_tokenizer(texts, tmp_path / kind, kind=kind, vocab_size=2000)
    assert (out / "tokenizer.json").is_file()
    cfg = open_clip_text_cfg(out, context_length=16)
    assert (cfg["vocab_size"], cfg["pad_id"]) == (2001, 0)  # 2000 trained + [EOS] added last
    tok = get_tokenizer({"type": "hf", "path": str(out), "context_length": 16})
    ids = tok(["There is a piece of farmland .", "Two large ships loaded with cargo were moored on both sides of the "
               "gray port, next to many small boats and a long pier ."])
    assert ids.shape == (2, 16)
    words = tok.tokenizer.convert_ids_to_tokens(ids[0])
    assert words[: words.index(EOS) + 1][-1] == EOS and ids[0].argmax().item() == words.index(EOS)
    assert ids[1, -1].item() == 2000  # truncated text still ends with [EOS]
    assert "[UNK]" not in words
    assert tok.tokenizer.decode(ids[0], skip_special_tokens=True).replace(" .", ".") == "there is a piece of farmland."
    model = create_model({"embed_dim": 16, "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 16,
                                                          "head_width": 8, "layers": 1, "in_channels": 4},
                          "text_cfg": {**cfg, "width": 16, "heads": 2, "layers": 1}})
    assert model.preprocess["text"]["tokenizer"]["path"] == str(out)
    assert model.encode("text", ids).shape == (2, 16)
    assert model.encode("image", torch.zeros(1, 4, 16, 16)).shape == (1, 16)


def test_tokenizer_cli_from_shards_and_errors(corpus, tmp_path, capsys):
    shards = tmp_path / "shards"
    run_ingest(CaptionsSource(make_options(CaptionsSource, captions_only=True)), corpus[:1], shards, progress=False)
    assert sum(1 for _ in corpus_texts([shards])) == 1050
    assert tokenizer_main([str(shards), "--out", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert tokenizer_main([str(tmp_path / "nothing"), "--out", str(tmp_path / "t2")]) == 2
    assert "not a shard folder" in capsys.readouterr().err


# -- translation ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory, corpus):
    """A randomly initialised MarianMT (d_model 16) with a word-level tokenizer, saved like a real one."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("opus-mt-en-de-tiny")
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus_texts(corpus[:1]), trainers.WordLevelTrainer(
        vocab_size=300, special_tokens=["<pad>", "<unk>", "</s>"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    fast.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=tok.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                          max_position_embeddings=32, pad_token_id=0, eos_token_id=2, decoder_start_token_id=0,
                          forced_eos_token_id=2)
    MarianMTModel(config).save_pretrained(str(folder))
    return folder


def test_translator_error_paths(tmp_path):
    with pytest.raises(TranslationError, match=r"translation model not found at .*nothing is downloaded"):
        Translator(tmp_path / "opus-mt-en-de", "de")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "marian"}')
    with pytest.raises(TranslationError, match="cannot load a seq2seq translation model"):
        Translator(tmp_path / "broken", "de")


def test_translator_translates_in_order_with_dedup(tiny_marian):
    tr = Translator(tiny_marian, "de", batch_size=4, max_length=8)
    texts = ["There is a piece of farmland .", "It is a piece of cropland .", "There is a piece of farmland ."]
    out = tr.translate(texts, progress=False)
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    assert out[0] == out[2]  # greedy decoding of identical input
    assert tr.describe() == {"model": tiny_marian.name, "path": str(tiny_marian.resolve()), "model_type": "marian",
                             "target_lang": "de"}
    with pytest.raises(TranslationError, match="no language token 'deu_Latn'"):
        Translator(tiny_marian, "de", target_code="deu_Latn")


def test_source_translate_option_adds_language_and_names_model(tiny_marian, corpus, tmp_path):
    opts = make_options(CaptionsSource, captions_only=True, translate_model=tiny_marian, translate_lang="de",
                        translate_batch_size=64, translate_max_length=8)
    summary = run_ingest(CaptionsSource(opts), corpus[:1], tmp_path / "out", progress=False)
    assert summary["samples_written"] == 210
    assert summary["counters"]["captions_by_lang"] == {"de": 1050, "en": 1050}
    assert summary["notes"]["translation"]["model"] == tiny_marian.name
    assert summary["notes"]["translation"]["captions_translated"] == 1050
    s = {x["__key__"]: x for x in read_shards(tmp_path / "out")}["ucm_test_91"]
    assert [c["lang"] for c in s["captions.json"]] == ["en"] * 5 + ["de"] * 5
    assert s["json"]["translation"] == {"model": tiny_marian.name, "model_type": "marian", "target_lang": "de",
                                        "source_lang": "en"}
    with pytest.raises(IngestError, match="needs --translate-lang"):
        opts = make_options(CaptionsSource, captions_only=True, translate_model=tiny_marian)
        run_ingest(CaptionsSource(opts), corpus[:1], tmp_path / "o2", progress=False)
    with pytest.raises(IngestError, match="translation model not found"):
        opts = make_options(CaptionsSource, captions_only=True, translate_model=tmp_path / "nope", translate_lang="de")
        run_ingest(CaptionsSource(opts), corpus[:1], tmp_path / "o3", progress=False)


def test_translate_precomp_command(tiny_marian, corpus, tmp_path):
    out = tmp_path / "ucm_de_precomp"
    assert translate_main([str(tiny_marian), str(corpus[0]), str(out), "--lang", "de", "--batch-size", "64",
                          "--max-length", "8"]) == 0
    assert len((out / "test_caps.txt").read_text().splitlines()) == 1050
    assert (out / "test_filename.txt").read_bytes() == (corpus[0] / "test_filename.txt").read_bytes()
    assert not list(out.glob("*.tmp*"))
    assert translate_main([str(tmp_path / "nope"), str(corpus[0]), str(out), "--lang", "de"]) == 2
    tr = Translator(tiny_marian, "de")
    with pytest.raises(TranslationError, match="no \\*_caps.txt"):
        translate_precomp(tr, tmp_path, tmp_path / "x")

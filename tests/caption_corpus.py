"""Awkward captions for the caption tokenizer's identity with open_clip: (name, caption) pairs.
Reusable by any test that feeds captions through a caption-aware package."""

from __future__ import annotations

LONG_500 = " ".join(" ".join(f"word{i % 37} and the Quick brown fox's" for i in range(100)).split()[:500])

CAPTIONS: list[tuple[str, str]] = [
    # plain and mixed case
    ("plain", "A photo of a cat sitting on a red sofa."),
    ("mixed_case", "MiXeD CaSe WoRdS, ALL CAPS and lower"),
    ("turkish_dotted_i", "İSTANBUL ılık İyi"),  # str.lower gives i + U+0307
    ("greek_final_sigma", "ΟΔΟΣ ΣΟΦΟΣ σοφός"),
    ("sharp_s", "STRASSE Straße GROẞE"),
    ("kelvin_ohm", "5 \u212a and 3 \u2126"),
    # accents and scripts
    ("accents", "Café naïve résumé façade Ångström Ægir"),
    ("cjk", "東京タワーの夜景、とても綺麗です。北京烤鸭 서울의 밤"),
    ("arabic", "مرحبا بالعالم، هذه صورة لقطة"),
    ("hebrew_rtl_mix", "שלום world עולם 123"),
    ("devanagari_thai", "नमस्ते दुनिया สวัสดีชาวโลก"),
    ("nfd_plain", "cafe\u0301 nai\u0308ve"),  # ftfy composes these (NFC)
    ("nfd_by_entity", "cafe&#769; n&#97;&#776;ive"),  # composed only if cleaning order is kept
    ("nfc", "caf\u00e9 na\u00efve"),
    ("hangul_jamo_nfd", "\u1112\u1161\u11ab\u1100\u1173\u11af"),
    ("zalgo", "z\u0351\u0346\u0357a\u0310\u0306l\u036a\u0364g\u036bo"),
    ("zero_width", "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom"),
    ("ypogegrammeni", "a\u0345b \u0345 \u03b1\u0345"),  # U+0345: no branch of open_clip's regex
    ("recent_unicode", "x\u0558y \ua7ce\ua7cf \U00010940\U00010941 z"),  # letters newer than Oniguruma's tables
    ("private_use_nonchar", "\ue000\uf8ff \uffff \U0010ffff \ufffd"),
    # emoji
    ("emoji", "I love it 😍🔥💯"),
    ("emoji_skin_tone", "👍🏽 👋🏿 🧑🏻‍💻"),
    ("emoji_flags", "🇯🇵🇫🇷 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"),
    ("emoji_zwj_family", "👨‍👩‍👧‍👦 family"),
    ("keycap_vs16", "1\ufe0f\u20e3 #\ufe0f\u20e3 \u2764\ufe0f \u2764\ufe0e"),
    ("paired_surrogates", "\ud83d\ude00 grin"),  # ftfy joins the pair into one emoji
    ("lone_surrogates", "bad \ud800 half \udfff"),  # ftfy makes each U+FFFD
    # HTML
    ("html_entities", "Tom &amp; Jerry &lt;b&gt;bold&lt;/b&gt; it&#39;s &quot;quoted&quot;"),
    ("html_double", "fish &amp;amp; chips &amp;lt;3"),
    ("html_triple", "a &amp;amp;amp; b"),
    ("html_with_tag", "<b>bold</b> &amp; <i>it</i> x < y &amp;amp; z"),  # a '<' stops ftfy's unescaping
    ("html_after_ftfy", "<p>&#8220;quoted&#8221; cafe&#769; &#xFF21;&#xFF22; &#xFB01;</p>"),  # ftfy never sees these decoded
    ("html_nbsp_numeric", "a&nbsp;b&#160;c &#x1F600; &#8217;"),
    ("html_bad_entity", "&notanentity; &#xZZ; &"),
    # ftfy's fixes
    ("mojibake", "The Mona Lisa doesnâ€™t have eyebrows. cafÃ© Ã¼ber"),
    ("curly_quotes", "“curly” ‘quotes’ — dash… ellipsis"),
    ("fullwidth", "ＦＵＬＬ ｗｉｄｔｈ １２３"),
    ("ligatures", "ﬁne ﬂower ﬀ ﬆ"),
    ("terminal_escape", "\x1b[31mred\x1b[0m text\x07bell\x00nul"),
    # whitespace
    ("tabs_newlines", "tab\there\nnew   line\r\ncrlf\x0bvt\x0cff"),
    ("unicode_spaces", "a\u00a0b\u3000c\u2028d\u2029e\u1680f\u202fg\x85h"),
    ("python_only_spaces", "a\x1cb\x1dc\x1ed\x1fe"),  # str.split separators that are not Unicode White_Space
    ("many_spaces", "     lots      of        spaces     "),
    ("empty", ""),
    ("whitespace_only", " \t\n\u3000 "),
    # digits, punctuation, contractions
    ("digits", "3.14159 2,000,000 0x1F 1e-9 ١٢٣ ½ ²"),
    ("punct_runs", "!!!??? ... --- *** @user #hashtag $100.00 (a)[b]{c} http://x.org/a?b=1&c=2"),
    ("contractions", "it's they're we've I'm you'll he'd don't"),
    ("contractions_upper", "IT'S THEY'RE WE'VE I'M YOU'LL HE'D DON'T"),
    ("contraction_edges", "'s 'S ''s rock'n'roll o'clock 'ſ ſ 'll'd"),
    # open_clip's special tokens inside a caption
    ("specials", "<start_of_text> x<end_of_text>y"),
    ("specials_in_punct", "!<start_of_text> '<end_of_text> <<start_of_text>>"),
    ("specials_case", "<START_OF_TEXT> <ſtart_of_text> &lt;end_of_text&gt;"),
    # length
    ("long_word", "supercalifragilisticexpialidocious" * 5),
    ("repeated_chars", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa zzzzzzz"),
    ("long_500_words", LONG_500),
]


def at_length(n_words: int, word: str = "cat") -> str:
    """A caption of `n_words` copies of a one-token word: n_words + 2 ids with SOT/EOT."""
    return " ".join([word] * n_words)

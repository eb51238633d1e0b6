// UTF-8 and Unicode helpers of the tokenizer: validation, lossy decoding (U+FFFD), character classes
// matching Rust's regex / Oniguruma as HF tokenizers uses them, and the GPT-2 byte-level alphabet.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wick::tok {

/// Offset of the first byte that does not start a valid UTF-8 sequence (overlongs, surrogates and
/// code points past U+10FFFF are invalid), or npos when all of `s` is valid.
size_t find_invalid_utf8(std::string_view s);

/// Decodes the code point at `s[i]` of valid UTF-8 and advances `i` past it.
uint32_t next_code_point(std::string_view s, size_t& i);
/// Appends the UTF-8 encoding of `cp` (< 0x110000).
void append_utf8(std::string& out, uint32_t cp);

enum class Utf8Status { valid, invalid, incomplete };
/// Classifies the sequence starting at p[0] (n >= 1 bytes available). `len` receives the length of
/// the character (valid), of its maximal invalid subpart (invalid: one U+FFFD replaces it), or n
/// (incomplete: a valid prefix of a character that more bytes could finish).
Utf8Status classify_utf8(const unsigned char* p, size_t n, size_t& len);

/// Appends `bytes` with every maximal invalid subsequence replaced by U+FFFD, exactly as Rust's
/// String::from_utf8_lossy (and so HF's decoders) does.
void append_lossy_utf8(std::string& out, std::string_view bytes);

/// Unicode White_Space (Rust regex `\s`, Oniguruma `\s`).
bool is_white_space(uint32_t cp);
/// Rust regex `\w`: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control.
bool is_word_char(uint32_t cp);

// The next three use Unicode 8.0's categories, as HF does (unicode_categories.cpp says why).
/// HF's BERT punctuation (BertPreTokenizer, Punctuation): ASCII punctuation (!-/ :-@ [-` {-~) or a P* category.
bool is_punctuation(uint32_t cp);
/// unicode_categories' is_other: Cc, Cf or Co (private use); not Cn or Cs.
bool is_other(uint32_t cp);
/// General category Mn (what BertNormalizer's strip_accents drops).
bool is_nonspacing_mark(uint32_t cp);
/// General category M (Mn, Mc, Me: what the StripAccents normalizer drops).
bool is_mark(uint32_t cp);
/// The CJK ideograph blocks that BertNormalizer's handle_chinese_chars surrounds with spaces (HF's ranges).
bool is_chinese_char(uint32_t cp);
/// Appends Rust's char::to_lowercase of `cp` (the simple mapping, and U+0130 -> "i\u0307").
void append_lowercase(std::string& out, uint32_t cp);
/// End of the extended grapheme cluster that starts at byte `i` of valid UTF-8 `s` (i < s.size()).
size_t grapheme_end(std::string_view s, size_t i);

/// The GPT-2 byte-level alphabet: byte b is written as the code point byte_to_code_point()[b].
const std::array<uint16_t, 256>& byte_to_code_point();
/// Inverse of the alphabet: the byte a code point stands for, or -1 when cp is not in the alphabet.
int code_point_to_byte(uint32_t cp);
/// Maps a token string of the byte-level alphabet back to raw bytes. False (out untouched past its
/// old size) when some character is outside the alphabet.
bool byte_level_decode(std::string_view token, std::string& out);
/// Maps raw bytes to the byte-level alphabet ("Ġworld" for " world").
std::string byte_level_encode(std::string_view bytes);

}  // namespace wick::tok

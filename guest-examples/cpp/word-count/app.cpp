// Counts words across all records; for every word seen, emits the word as key and its running
// count as value. Words are split on Unicode whitespace and lowercased as Rust's `to_lowercase`
// does for the characters a one-to-one mapping covers (towlower). C++20, without exceptions.
#include <cstdint>
#include <cstdlib>
#include <cwctype>
#include <optional>
#include <string>
#include <string_view>

#include "weir.h"

namespace {

// Unicode's White_Space characters (what Rust's split_whitespace splits on).
bool is_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

// The code point at the front of `s` (UTF-8) and its length in bytes; nothing when not UTF-8.
std::optional<std::pair<char32_t, size_t>> decode(std::string_view s) {
    auto b = static_cast<uint8_t>(s[0]);
    if (b < 0x80) return std::pair{char32_t{b}, size_t{1}};
    size_t len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
    if (len == 0 || len > s.size()) return std::nullopt;
    char32_t c = b & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        auto next = static_cast<uint8_t>(s[i]);
        if ((next & 0xc0) != 0x80) return std::nullopt;
        c = (c << 6) | (next & 0x3f);
    }
    return std::pair{c, len};
}

void encode(char32_t c, std::string &out) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xc0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xe0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    }
}

void count(const std::string &word) {
    weir_bytes stored;
    uint64_t n = 0;
    if (weir_state_get(word.data(), word.size(), &stored)) {
        std::string text(reinterpret_cast<const char *>(stored.ptr), stored.len);
        n = std::strtoull(text.c_str(), nullptr, 10);
    }
    std::string value = std::to_string(n + 1);
    weir_state_put(word.data(), word.size(), value.data(), value.size());
    weir_emit(word.data(), word.size(), value.data(), value.size());
}

}  // namespace

extern "C" int weir_process(const weir_record *record) {
    if (!record->value.present) return weir_fail("the record has no value (tombstone)");
    std::string_view rest(reinterpret_cast<const char *>(record->value.ptr), record->value.len);
    std::string word;
    while (!rest.empty()) {
        auto decoded = decode(rest);
        if (!decoded) return weir_fail("the value is not UTF-8");
        auto [c, len] = *decoded;
        rest.remove_prefix(len);
        if (is_space(c)) {
            if (!word.empty()) count(word);
            word.clear();
        } else {
            encode(static_cast<char32_t>(std::towlower(static_cast<wint_t>(c))), word);
        }
    }
    if (!word.empty()) count(word);
    return WEIR_OK;
}

#!/usr/bin/env python3
"""Writes test/chat/jinja_cases.json: small templates, their variables, and
what Python Jinja2 renders for them in transformers' environment
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
json.dumps tojson, raise_exception) -- or the error it raises. Read by
test/unit/jinja_test.cpp. Needs only jinja2:

    python3 test/chat/make_jinja_cases.py test/chat/jinja_cases.json
"""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


V = {
    "s": "Hello, World",
    "n": 7,
    "f": 2.5,
    "items": [3, 1, 2],
    "words": ["a", "b", "c"],
    "d": {"b": 1, "a": [1, 2.0, None, True], "c": {"x": "y"}},
    "msgs": [{"role": "system", "content": " sys "}, {"role": "user", "content": "hi"},
             {"role": "assistant", "content": "<think>\nr\n</think>\n\nans"}],
    "u": "héllo wörld 日本 🙂",
    "t": True,
    "none": None,
    "empty": [],
}

CASES = [
    # output and literals
    ("text_only", "plain text\nline 2\n", {}),
    ("literals", "{{ 1 }} {{ -3 }} {{ 2.0 }} {{ 1e3 }} {{ 0.1 }} {{ 1e-7 }} {{ 1e16 }} {{ 123456789.125 }} {{ true }} {{ False }} {{ none }} {{ 'a' \"b\" }}", {}),
    ("string_escapes", "{{ 'tab\\there' }}|{{ 'nl\\nx' }}|{{ 'q\\'q' }}|{{ \"d\\\"q\" }}|{{ '\\u00e9\\x41\\101' }}|{{ 'back\\\\slash' }}|{{ 'keep\\d' }}", {}),
    ("list_dict_repr", "{{ [1, 'a', none, true, 2.5, [\"q'\"]] }} {{ {'k': 'v', 'n': [1]} }} {{ (1,) }} {{ (1, 2) }} {{ () }} {{ d }}", V),
    ("repr_quotes", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', 'é'] }}", {}),
    ("float_math", "{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1 + 2.5 }} {{ 0.1 + 0.2 }} {{ 3 * 'ab' }} {{ [0] * 3 }} {{ 10 / 4 * 2 }}", {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ not 1 == 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 1 }} {{ 1 < 3 > 2 == 2 }} {{ 1 in [1] in [[1]] }} {{ 'a' ~ (1 + 2) }} {{ 2 ~ 3 * 2 }} {{ 1 - 2 - 3 }} {{ 2 * 3 % 4 }}", {}),
    ("concat_tilde", "{{ s ~ '!' ~ n ~ none ~ missing ~ t }}", V),
    ("comparisons", "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 != 2 }} {{ n >= 7 }} {{ true == 1 }} {{ d == d }} {{ none == none }} {{ missing == missing }}", V),
    ("in_not_in", "{{ 'ell' in s }} {{ 'b' in d }} {{ 2 in items }} {{ 9 not in items }} {{ 'z' in missing }} {{ 'x' in d.c }}", V),
    ("and_or_values", "{{ 0 or 'x' }}|{{ 1 and 'y' }}|{{ '' and 'z' }}|{{ none or empty }}|{{ not none }}", V),
    ("ternary", "{{ 'yes' if t else 'no' }} {{ 'yes' if none else 'no' }} [{{ 'only' if none }}] {{ 'a' if false else 'b' if true else 'c' }}", V),
    # attributes, subscripts, slices
    ("attr_and_item", "{{ d.b }} {{ d['a'][1] }} {{ d.c.x }} {{ msgs[1].role }} {{ msgs[-1]['role'] }} {{ items.0 }}", V),
    ("missing_is_empty", "[{{ missing }}][{{ d.nokey }}][{{ items[10] }}][{{ d['zz'] }}][{{ s[100] }}][{{ none.x }}][{{ n.nope }}]", V),
    ("slices", "{{ items[1:] }} {{ items[:-1] }} {{ items[::-1] }} {{ items[::2] }} {{ s[::-1] }} {{ s[7:] }} {{ u[1:5] }} {{ msgs[1:]|length }} {{ items[5:] }} {{ items[-100:2] }}", V),
    ("unicode_index", "{{ u[0] }}{{ u[-1] }}{{ u|length }}{{ u[12] }}", V),
    # filters
    ("tojson_basic", "{{ d|tojson }}|{{ u|tojson }}|{{ 'a\"b\\\\c\\n\\t\\u0001'|tojson }}|{{ [1.0, 1e-05, 3]|tojson }}|{{ none|tojson }}|{{ (1, 'a')|tojson }}", V),
    ("tojson_indent", "{{ d|tojson(indent=4) }}\n{{ d|tojson(indent=2, sort_keys=true) }}\n{{ empty|tojson(indent=2) }}{{ {}|tojson(indent=2) }}\n{{ [[], {}]|tojson(indent=1) }}", V),
    ("tojson_options", "{{ d|tojson(separators=(',', ':')) }}|{{ u|tojson(ensure_ascii=true) }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ [1]|tojson(indent='\t') }}", V),
    ("trim_filters", "[{{ '  x y \n'|trim }}][{{ 'xxhixx'|trim('x') }}][{{ none|trim }}][{{ missing|trim }}][{{ '\u3000wide\u00a0'|trim }}]", V),
    ("length_first_last", "{{ items|length }} {{ s|length }} {{ d|length }} {{ missing|length }} {{ items|first }} {{ items|last }} {{ s|first }} {{ d|first }} [{{ empty|first }}] {{ items|count }}", V),
    ("join", "{{ words|join }} {{ words|join(', ') }} {{ items|join('-') }} {{ s|join('.') }} [{{ missing|join(',') }}] {{ msgs|join('|', attribute='role') }}", V),
    ("case_filters", "{{ s|upper }} {{ s|lower }} {{ 'hello WORLD'|capitalize }} {{ 'hello big-world (x)'|title }} {{ u|upper }}", V),
    ("default_filter", "{{ missing|default('dflt') }} {{ none|default('n') }} {{ none|default('n', true) }} {{ ''|d('e', boolean=true) }} {{ s|default('x') }} [{{ missing|default }}]", V),
    ("items_list_string", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %} {{ s|list }} {{ d|list }} {{ 12|string ~ 'x' }} {{ items|string }}", V),
    ("int_float", "{{ '42'|int }} {{ 3.9|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ '2.5'|int }} {{ '0x1A'|int(0, 16) }} {{ '2.5'|float }} {{ 3|float }} {{ 'nan'|float }} {{ true|int }}", {}),
    ("replace_safe", "{{ s|replace('l', 'L') }} {{ s|replace('l', 'L', 2) }} {{ 'abc'|replace('', '-') }} {{ s|safe }} {{ 5|safe }}", V),
    ("reverse_unique_abs", "{{ items|reverse|list }} {{ s|reverse }} {{ [1, 2, 1, 'A', 'a']|unique|list }} {{ -3|abs }} {{ (-2.5)|abs }}", V),
    ("map_select", "{{ msgs|map(attribute='role')|join(',') }} {{ msgs|selectattr('role', 'equalto', 'user')|list|length }} {{ msgs|rejectattr('role', 'eq', 'system')|map(attribute='content')|list }} {{ items|select('odd')|list }} {{ items|reject('even')|list }} {{ [0, 1, '', 'a']|select|list }} {{ words|map('upper')|list }}", V),
    ("generators", "{% if empty|select %}always-true{% endif %} {{ msgs|selectattr('role', 'eq', 'x')|list }} {{ items|reverse|list }} {{ items|map('string')|join('+') }} {{ 3 in items|select('odd') }} {{ msgs|selectattr('role', 'eq', 'user')|first }} {{ items|unique is iterable }} {% for x in items|reject('odd') %}{{ x }}{% endfor %}", V),
    ("list_methods", "{{ items.count(1) }} {{ words.index('b') }} {{ [1, 1, 2].count(1) }}", V),
    # string and dict methods
    ("string_methods", "{{ '  a b  '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|{{ '\n\nab\n'.strip('\n') }}|{{ 'a,b,,c'.split(',') }}|{{ '  a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ s.startswith('Hell') }}|{{ s.endswith(('x', 'ld')) }}|{{ s.upper() }}|{{ s.lower() }}|{{ s.replace('o', '0') }}|{{ 'hello wORLD 2nd'.title() }}|{{ 'aXb'.capitalize() }}|{{ s.find('o') }}|{{ s.count('l') }}", V),
    ("qwen3_reasoning_split", "{% set c = msgs[2].content %}{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", V),
    ("dict_methods", "{{ d.get('b') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {% for k, v in d.items() %}{{ k }}:{{ v }} {% endfor %}{{ d.keys()|list }} {{ d.values()|list|length }} {{ d['items'] is defined }}", V),
    # tests
    ("tests", "{{ missing is defined }} {{ s is defined }} {{ missing is undefined }} {{ none is none }} {{ s is string }} {{ n is number }} {{ f is number }} {{ t is number }} {{ d is mapping }} {{ items is iterable }} {{ s is iterable }} {{ n is iterable }} {{ missing is iterable }} {{ items is sequence }} {{ t is boolean }} {{ n is boolean }} {{ n is integer }} {{ f is float }} {{ t is true }} {{ false is false }} {{ 0 is false }} {{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ n is eq 7 }} {{ s is not none }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ n is gt(3) }} {{ 2 is in items }}", V),
    # statements
    ("if_elif_else", "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x > 3 %}big{% else %}other{% endif %} {% endfor %}", {}),
    ("for_loop_vars", "{% for w in words %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('x', 'y') }};{% endfor %}", V),
    ("for_else_and_filter", "{% for x in empty %}no{% else %}empty{% endfor %} {% for x in items if x > 1 %}{{ x }}{{ loop.length }}{{ loop.last }},{% endfor %} {% for x in missing %}{{ x }}{% else %}undef-empty{% endfor %}", V),
    ("for_unpack", "{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }} {% endfor %}{% for k, v in d.items() %}{{ k }} {% endfor %}{% for (a, b) in [('x', 'y')] %}{{ a }}{{ b }}{% endfor %}", V),
    ("for_over_dict_and_string", "{% for k in d %}{{ k }}{% endfor %} {% for ch in 'ab' %}[{{ ch }}]{% endfor %}", V),
    ("loop_controls", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("nested_loops", "{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("set_scoping", "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}|{% if true %}{% set x = 5 %}{% endif %}{{ x }}", {}),
    ("namespace", "{% set ns = namespace(total=0, seen=none) %}{% for i in items %}{% set ns.total = ns.total + i %}{% set ns.seen = i %}{% endfor %}{{ ns.total }} {{ ns.seen }} {{ ns.missing is defined }}", V),
    ("set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = 1, 2 %}{{ t }} {% set blk %}inner {{ s }}{% endset %}[{{ blk }}] {% set up | upper %}shout{% endset %}{{ up }}", V),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(punct='.', name='Cy') }} [{{ greet() }}]", {}),
    ("macro_sees_globals", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ s }}{% set g = 'local' %}{{ g }}{% endmacro %}{{ m() }}{{ g }}", V),
    ("raw_block", "{% raw %}{{ not rendered }} {% if %}{% endraw %}|{{ 1 }}", {}),
    ("comments", "a{# comment #}b{#- trim -#}  c\n{# line comment #}\nd", {}),
    ("whitespace_control", "a  {{- 'b' -}}  c\n  {%- if true -%}\n  d\n  {%- endif %}\ne {{ 'f' }}\n", {}),
    ("trim_lstrip_blocks", "<ul>\n  {% for w in words %}\n    <li>{{ w }}</li>\n  {% endfor %}\n</ul>\n  {# comment #}\nend\n", V),
    ("lstrip_plus_and_trim_plus", "x\n  {%+ if true %}kept-indent{% endif +%}\nkept-newline\n  {% if true %}\nA\n  {% endif %}\n", {}),
    ("trailing_newline_dropped", "one\n\n", {}),
    ("crlf_source", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc", {}),
    ("filter_block", "{% filter upper %}loud {{ s }}{% endfilter %}", V),
    ("range_global", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}", {}),
    ("dict_global_and_literals", "{{ dict(a=1, b='x') }} {{ {'k': 1, 2: 'two', none: 3, true: 4}|length }} {{ [1, 2,] }} {{ {'a': 1,} }}", {}),
    ("messages_like_transformers", "{% for m in msgs %}{% if m.role == 'system' %}[{{ m['content']|trim }}]{% else %}<{{ m.role }}>{{ m.content }}{% endif %}{% if not loop.last %}\n{% endif %}{% endfor %}", V),
    # errors (raised by Jinja2 too)
    ("raise_exception", "before{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}", {}),
    ("error_undefined_attr", "{{ missing.attr }}", {}),
    ("error_undefined_call", "{{ missing() }}", {}),
    ("error_undefined_add", "{{ missing + 1 }}", {}),
    ("error_add_types", "{{ 'a' + 1 }}", {}),
    ("error_in_none", "{{ 'x' in none }}", V),
    ("error_div_zero", "{{ 1 / 0 }}", {}),
    ("error_not_iterable", "{% for x in 5 %}{% endfor %}", {}),
    ("error_length_int", "{{ 5|length }}", {}),
    ("error_tojson_undefined", "{{ missing|tojson }}", {}),
    ("error_set_attr_non_namespace", "{% set d2 = {} %}{% set d2.x = 1 %}", {}),
    ("error_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("error_compare_types", "{{ 1 < 'a' }}", {}),
    ("error_unknown_filter", "{{ 1|nosuchfilter }}", {}),
    ("error_unknown_test", "{{ 1 is nosuchtest }}", {}),
    ("error_unclosed_if", "{% if true %}x", {}),
    ("error_unclosed_for", "{% for x in y %}x{% endif %}", {}),
    ("error_bad_expression", "{{ 1 + }}", {}),
    ("error_unclosed_variable", "{{ 1 ", {}),
    ("error_unclosed_comment", "{# never closed", {}),
    ("error_unclosed_string", "{{ 'abc }}", {}),
    ("error_unknown_tag", "{% frobnicate %}", {}),
    ("error_endfor_stray", "{% endfor %}", {}),
    ("error_break_outside_loop", "{% break %}", {}),
    ("error_macro_too_many_args", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}),
    ("error_generator_length", "{{ items|select('odd')|length }}", V),
    ("error_generator_last", "{{ items|select|last }}", V),
    ("error_generator_tojson", "{{ items|map('string')|tojson }}", V),
    ("error_chained_tests", "{{ 1 is number is defined }}", {}),
    ("error_list_index_missing", "{{ words.index('z') }}", V),
    ("error_range_too_big", "{{ range(1000000)|length }}", {}),
]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    env = environment()
    out = {"jinja2_version": jinja2.__version__, "cases": []}
    for name, source, variables in CASES:
        case = {"name": name, "template": source, "variables": variables}
        try:
            case["expected"] = env.from_string(source).render(**variables)
        except Exception as e:  # our renderer must fail as well
            case["error"] = str(e)
            case["error_type"] = type(e).__name__
        out["cases"].append(case)
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

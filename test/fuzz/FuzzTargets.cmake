# Builds the libFuzzer targets with clang through ExternalProject (test/fuzz is
# a CMake project of its own: the main build uses g++) and registers a
# bounded ctest run of each over the committed seed corpus. Included from
# test/CMakeLists.txt; does nothing unless TRENI_ENABLE_FUZZ is ON and
# clang++-14 with its libFuzzer runtime is installed.
if(NOT TRENI_ENABLE_FUZZ)
  return()
endif()

find_program(TRENI_FUZZ_CXX NAMES clang++-14)
if(NOT TRENI_FUZZ_CXX)
  message(STATUS "clang++-14 not found: fuzz targets disabled")
  return()
endif()
execute_process(COMMAND ${TRENI_FUZZ_CXX} -print-runtime-dir
                OUTPUT_VARIABLE treni_fuzz_runtime_dir
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT EXISTS "${treni_fuzz_runtime_dir}/libclang_rt.fuzzer-x86_64.a")
  message(STATUS "libFuzzer runtime not found in '${treni_fuzz_runtime_dir}' "
                 "(install libclang-rt-14-dev): fuzz targets disabled")
  return()
endif()

include(ExternalProject)
set(treni_fuzz_source_dir ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(treni_fuzz_root ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)
set(treni_fuzz_binary_dir ${CMAKE_BINARY_DIR}/test/fuzz-build)
set(treni_fuzz_work_dir ${CMAKE_BINARY_DIR}/test/fuzz-work)
set(treni_fuzz_names safetensors_header_fuzz tokenizer_fuzz jinja_fuzz
                     openai_api_fuzz agent_dsl_fuzz agent_request_fuzz tool_args_fuzz)
list(TRANSFORM treni_fuzz_names PREPEND ${treni_fuzz_binary_dir}/
     OUTPUT_VARIABLE treni_fuzz_binaries)
ExternalProject_Add(treni_fuzz_targets
  SOURCE_DIR ${treni_fuzz_source_dir}
  BINARY_DIR ${treni_fuzz_binary_dir}
  CMAKE_ARGS
    -DCMAKE_CXX_COMPILER=${TRENI_FUZZ_CXX}
    -DTRENI_SOURCE_DIR=${treni_fuzz_root}
  # The sources live outside the sub-project; let its own build decide.
  BUILD_ALWAYS TRUE
  INSTALL_COMMAND ""
  BUILD_BYPRODUCTS ${treni_fuzz_binaries}
)

# treni_fuzz_test(NAME SECONDS MAX_LEN CORPUS [DICT file] [ENVIRONMENT ...])
# A bounded ctest run of the libFuzzer binary NAME for SECONDS over the
# committed seed corpus test/fuzz/CORPUS (with the dictionary DICT, if given).
# libFuzzer writes new inputs into the first corpus directory: a scratch one
# in the build tree, so the committed seeds stay untouched.
function(treni_fuzz_test name seconds max_len corpus)
  cmake_parse_arguments(ARG "" "DICT" "ENVIRONMENT" ${ARGN})
  set(work ${treni_fuzz_work_dir}/${name})
  file(MAKE_DIRECTORY ${work}/corpus ${work}/artifacts)
  set(dict_arg)
  if(ARG_DICT)
    set(dict_arg -dict=${treni_fuzz_source_dir}/${ARG_DICT})
  endif()
  add_test(NAME ${name}
    COMMAND ${treni_fuzz_binary_dir}/${name}
            -max_total_time=${seconds} -rss_limit_mb=2048 -timeout=10
            -max_len=${max_len} -print_final_stats=1 ${dict_arg}
            -artifact_prefix=${work}/artifacts/
            ${work}/corpus ${treni_fuzz_source_dir}/${corpus})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 LABELS fuzz)
  if(ARG_ENVIRONMENT)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${ARG_ENVIRONMENT}")
  endif()
endfunction()

treni_fuzz_test(safetensors_header_fuzz 60 8192 corpus DICT safetensors.dict)

# The tokenizer: a real Qwen tokenizer.json (fetched into build/tokenizers by
# test/tokenizers/fetch.sh) and the Llama fixture; seeds in tokenizer_corpus.
treni_fuzz_test(tokenizer_fuzz 45 4096 tokenizer_corpus
  ENVIRONMENT TRENI_FUZZ_TOKENIZER=${CMAKE_BINARY_DIR}/tokenizers/qwen2_5/tokenizer.json)

# The chat-template interpreter and the tool-call parsers; seeds in
# jinja_corpus.
treni_fuzz_test(jinja_fuzz 60 8192 jinja_corpus DICT jinja.dict)

# The OpenAI request layer: bodies parsed and prepared with the fixtures'
# chat templates; seeds in openai_corpus (the reproducers of issue 16 are
# 40 KB, hence max_len).
treni_fuzz_test(openai_api_fuzz 45 49152 openai_corpus DICT openai.dict)

# The .agent front end: the same bounded run over its own seed corpus.
treni_fuzz_test(agent_dsl_fuzz 60 4096 agent_corpus DICT agent.dict)

# The tool layer: signatures, URLs, sandbox paths, fault specs and built-in
# tool calls; seeds in tool_corpus.
treni_fuzz_test(agent_request_fuzz 30 16384 agent_request_corpus DICT agent.dict)

treni_fuzz_test(tool_args_fuzz 30 4096 tool_corpus)

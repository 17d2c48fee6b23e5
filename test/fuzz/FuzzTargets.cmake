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
ExternalProject_Add(treni_fuzz_targets
  SOURCE_DIR ${treni_fuzz_source_dir}
  BINARY_DIR ${treni_fuzz_binary_dir}
  CMAKE_ARGS
    -DCMAKE_CXX_COMPILER=${TRENI_FUZZ_CXX}
    -DTRENI_SOURCE_DIR=${treni_fuzz_root}
  # The sources live outside the sub-project; let its own build decide.
  BUILD_ALWAYS TRUE
  INSTALL_COMMAND ""
  BUILD_BYPRODUCTS ${treni_fuzz_binary_dir}/safetensors_header_fuzz
                   ${treni_fuzz_binary_dir}/tokenizer_fuzz
                   ${treni_fuzz_binary_dir}/jinja_fuzz
                   ${treni_fuzz_binary_dir}/agent_dsl_fuzz
                   ${treni_fuzz_binary_dir}/tool_args_fuzz
)

# libFuzzer writes new inputs into the first corpus directory: a scratch one
# in the build tree, so the committed seeds stay untouched.
file(MAKE_DIRECTORY ${treni_fuzz_work_dir}/safetensors_header_fuzz/corpus
                    ${treni_fuzz_work_dir}/safetensors_header_fuzz/artifacts)
add_test(NAME safetensors_header_fuzz
  COMMAND ${treni_fuzz_binary_dir}/safetensors_header_fuzz
          -max_total_time=60 -rss_limit_mb=2048 -timeout=10 -max_len=8192
          -print_final_stats=1
          -dict=${treni_fuzz_source_dir}/safetensors.dict
          -artifact_prefix=${treni_fuzz_work_dir}/safetensors_header_fuzz/artifacts/
          ${treni_fuzz_work_dir}/safetensors_header_fuzz/corpus
          ${treni_fuzz_source_dir}/corpus)
set_tests_properties(safetensors_header_fuzz PROPERTIES
  TIMEOUT 300 LABELS fuzz)

# The tokenizer: a real Qwen tokenizer.json (fetched into build/tokenizers by
# test/tokenizers/fetch.sh) and the Llama fixture; seeds in tokenizer_corpus.
file(MAKE_DIRECTORY ${treni_fuzz_work_dir}/tokenizer_fuzz/corpus
                    ${treni_fuzz_work_dir}/tokenizer_fuzz/artifacts)
add_test(NAME tokenizer_fuzz
  COMMAND ${treni_fuzz_binary_dir}/tokenizer_fuzz
          -max_total_time=45 -rss_limit_mb=2048 -timeout=10 -max_len=4096
          -print_final_stats=1
          -artifact_prefix=${treni_fuzz_work_dir}/tokenizer_fuzz/artifacts/
          ${treni_fuzz_work_dir}/tokenizer_fuzz/corpus
          ${treni_fuzz_source_dir}/tokenizer_corpus)
set_tests_properties(tokenizer_fuzz PROPERTIES
  TIMEOUT 300 LABELS fuzz
  ENVIRONMENT TRENI_FUZZ_TOKENIZER=${CMAKE_BINARY_DIR}/tokenizers/qwen2_5/tokenizer.json)

# The chat-template interpreter and the tool-call parsers; seeds in
# jinja_corpus.
file(MAKE_DIRECTORY ${treni_fuzz_work_dir}/jinja_fuzz/corpus
                    ${treni_fuzz_work_dir}/jinja_fuzz/artifacts)
add_test(NAME jinja_fuzz
  COMMAND ${treni_fuzz_binary_dir}/jinja_fuzz
          -max_total_time=60 -rss_limit_mb=2048 -timeout=10 -max_len=8192
          -print_final_stats=1
          -dict=${treni_fuzz_source_dir}/jinja.dict
          -artifact_prefix=${treni_fuzz_work_dir}/jinja_fuzz/artifacts/
          ${treni_fuzz_work_dir}/jinja_fuzz/corpus
          ${treni_fuzz_source_dir}/jinja_corpus)
set_tests_properties(jinja_fuzz PROPERTIES
  TIMEOUT 300 LABELS fuzz)

# The .agent front end: the same bounded run over its own seed corpus.
file(MAKE_DIRECTORY ${treni_fuzz_work_dir}/agent_dsl_fuzz/corpus
                    ${treni_fuzz_work_dir}/agent_dsl_fuzz/artifacts)
add_test(NAME agent_dsl_fuzz
  COMMAND ${treni_fuzz_binary_dir}/agent_dsl_fuzz
          -max_total_time=60 -rss_limit_mb=2048 -timeout=10 -max_len=4096
          -print_final_stats=1
          -dict=${treni_fuzz_source_dir}/agent.dict
          -artifact_prefix=${treni_fuzz_work_dir}/agent_dsl_fuzz/artifacts/
          ${treni_fuzz_work_dir}/agent_dsl_fuzz/corpus
          ${treni_fuzz_source_dir}/agent_corpus)
set_tests_properties(agent_dsl_fuzz PROPERTIES
  TIMEOUT 300 LABELS fuzz)

# The tool layer: signatures, URLs, sandbox paths, fault specs and built-in
# tool calls; seeds in tool_corpus.
file(MAKE_DIRECTORY ${treni_fuzz_work_dir}/tool_args_fuzz/corpus
                    ${treni_fuzz_work_dir}/tool_args_fuzz/artifacts)
add_test(NAME tool_args_fuzz
  COMMAND ${treni_fuzz_binary_dir}/tool_args_fuzz
          -max_total_time=30 -rss_limit_mb=2048 -timeout=10 -max_len=4096
          -print_final_stats=1
          -artifact_prefix=${treni_fuzz_work_dir}/tool_args_fuzz/artifacts/
          ${treni_fuzz_work_dir}/tool_args_fuzz/corpus
          ${treni_fuzz_source_dir}/tool_corpus)
set_tests_properties(tool_args_fuzz PROPERTIES
  TIMEOUT 300 LABELS fuzz)

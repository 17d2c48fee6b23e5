# Debian-packaged libraries for the tokenizer, server and agent tools, as
# imported targets. Static archives where Debian ships them (PCRE2, utf8proc,
# SQLite, FAISS), so `treni` stays self-contained on the GPU machine.
# cpp-httplib is packaged as a shared library only (libcpp-httplib.so.0.11,
# with OpenSSL and brotli); bench/gpu_check.sh carries it to the GPU machine.
# It is the HTTP client of the agent tools and the tests; the server is
# Boost.Beast (header-only, libboost-dev), included by
# runtime/serve/http_server.cpp alone.

function(treni_import_static target header archive)
  find_path(${target}_INCLUDE ${header} REQUIRED)
  find_library(${target}_LIBRARY NAMES ${archive} REQUIRED)
  add_library(${target} STATIC IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION "${${target}_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${${target}_INCLUDE}")
endfunction()

treni_import_static(treni_pcre2 pcre2.h libpcre2-8.a)
set_property(TARGET treni_pcre2 APPEND PROPERTY
             INTERFACE_COMPILE_DEFINITIONS PCRE2_CODE_UNIT_WIDTH=8 PCRE2_STATIC)
treni_import_static(treni_utf8proc utf8proc.h libutf8proc.a)
set_property(TARGET treni_utf8proc APPEND PROPERTY
             INTERFACE_COMPILE_DEFINITIONS UTF8PROC_STATIC)
treni_import_static(treni_sqlite3 sqlite3.h libsqlite3.a)
set_property(TARGET treni_sqlite3 APPEND PROPERTY INTERFACE_LINK_LIBRARIES
             Threads::Threads ${CMAKE_DL_LIBS} m)

# FAISS (libfaiss-dev) for rag.search's approximate index and exact top-k,
# static, with what libfaiss.a calls, static too: the reference BLAS and
# LAPACK (libblas-dev, liblapack-dev), and the GCC runtimes behind them
# (libgfortran for LAPACK's error reporting, libquadmath, libgomp for
# FAISS's OpenMP loops), found next to the compiler's own libraries. Debian's
# faiss CMake package is not used: it links the shared BLAS and LAPACK.
treni_import_static(treni_faiss faiss/IndexHNSW.h libfaiss.a)
find_library(treni_lapack_LIBRARY NAMES liblapack.a REQUIRED)
find_library(treni_blas_LIBRARY NAMES libblas.a REQUIRED)
set(treni_faiss_runtimes)
foreach(runtime gfortran quadmath gomp)
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=lib${runtime}.a
                  OUTPUT_VARIABLE treni_${runtime}_LIBRARY
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT IS_ABSOLUTE "${treni_${runtime}_LIBRARY}"
     OR NOT EXISTS "${treni_${runtime}_LIBRARY}")
    message(FATAL_ERROR "lib${runtime}.a not found next to ${CMAKE_CXX_COMPILER} "
                        "(FAISS needs it; install libgfortran-12-dev)")
  endif()
  list(APPEND treni_faiss_runtimes "${treni_${runtime}_LIBRARY}")
endforeach()
set_property(TARGET treni_faiss APPEND PROPERTY INTERFACE_LINK_LIBRARIES
             ${treni_lapack_LIBRARY} ${treni_blas_LIBRARY} ${treni_faiss_runtimes}
             Threads::Threads ${CMAKE_DL_LIBS} m)

find_path(treni_httplib_INCLUDE httplib.h REQUIRED)
find_library(treni_httplib_LIBRARY NAMES cpp-httplib REQUIRED)
add_library(treni_httplib SHARED IMPORTED GLOBAL)
set_target_properties(treni_httplib PROPERTIES
  IMPORTED_LOCATION "${treni_httplib_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${treni_httplib_INCLUDE}"
  INTERFACE_COMPILE_DEFINITIONS "CPPHTTPLIB_OPENSSL_SUPPORT;CPPHTTPLIB_ZLIB_SUPPORT;CPPHTTPLIB_BROTLI_SUPPORT"
  INTERFACE_LINK_LIBRARIES Threads::Threads)

find_path(treni_beast_INCLUDE boost/beast.hpp REQUIRED)
add_library(treni_beast INTERFACE IMPORTED GLOBAL)
set_target_properties(treni_beast PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${treni_beast_INCLUDE}"
  INTERFACE_COMPILE_DEFINITIONS "BOOST_BEAST_USE_STD_STRING_VIEW;BOOST_ASIO_NO_DEPRECATED"
  INTERFACE_LINK_LIBRARIES Threads::Threads)

# Makes the binaries self-contained: Debian's MLIR/LLVM/Abseil CMake packages
# export shared libraries (libLLVM.so, libabsl_*.so). `treni` must run alone on
# the GPU machine, so every imported target is redirected to its static archive
# and the LLVM dylib is replaced by the static component archives MLIR needs.

# Points an imported SHARED target at lib<name>.a next to its .so.
function(treni_use_static_archive target)
  get_target_property(configs ${target} IMPORTED_CONFIGURATIONS)
  if(NOT configs)
    set(configs "")
  endif()
  foreach(cfg IN LISTS configs ITEMS "")
    if(cfg STREQUAL "")
      set(prop IMPORTED_LOCATION)
    else()
      set(prop IMPORTED_LOCATION_${cfg})
    endif()
    get_target_property(location ${target} ${prop})
    if(location AND location MATCHES "^(.*)\\.so(\\.[0-9.]+)?$")
      set(archive "${CMAKE_MATCH_1}.a")
      if(EXISTS "${archive}")
        set_target_properties(${target} PROPERTIES ${prop} "${archive}")
      endif()
    endif()
  endforeach()
endfunction()

# Every absl:: target: shared -> static.
function(treni_static_absl)
  get_directory_property(imported IMPORTED_TARGETS)
  foreach(target IN LISTS imported)
    if(target MATCHES "^absl::")
      get_target_property(type ${target} TYPE)
      if(type STREQUAL "SHARED_LIBRARY")
        treni_use_static_archive(${target})
      endif()
    endif()
  endforeach()
endfunction()

# The imported `LLVM` dylib target -> the static component archives.
function(treni_static_llvm)
  execute_process(
    COMMAND ${LLVM_TOOLS_BINARY_DIR}/llvm-config --link-static --libnames
            support demangle targetparser binaryformat remarks bitstreamreader
    OUTPUT_VARIABLE names OUTPUT_STRIP_TRAILING_WHITESPACE)
  separate_arguments(names)
  set(archives "")
  foreach(name IN LISTS names)
    list(APPEND archives "${LLVM_LIBRARY_DIR}/${name}")
  endforeach()
  list(GET archives 0 first)
  list(REMOVE_AT archives 0)
  get_target_property(configs LLVM IMPORTED_CONFIGURATIONS)
  foreach(cfg IN LISTS configs)
    set_target_properties(LLVM PROPERTIES IMPORTED_LOCATION_${cfg} "${first}"
                                          IMPORTED_SONAME_${cfg} "")
  endforeach()
  find_package(ZLIB REQUIRED)
  set_target_properties(LLVM PROPERTIES
    IMPORTED_LOCATION "${first}"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_LINK_LIBRARIES "${archives};${archives};ZLIB::ZLIB;rt;dl;pthread;m")
endfunction()

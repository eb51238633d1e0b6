# The layers of DESIGN.md ("Layers") as CMake targets, and the check that keeps them layers.
#
# Every layer is a static library wick_<layer> built from src/<layer>/, linked to the layers it may use and
# to nothing above. Linking alone cannot stop an include: all of src/ is one include root, so
# `#include "model/linear.h"` compiles from anywhere. wick_check_layer reads the includes at configure
# time and fails configuration on one that crosses the rule.

include_guard(GLOBAL)

set(WICK_SRC_DIR ${CMAKE_SOURCE_DIR}/src)
set(WICK_PUBLIC_INCLUDE_DIR ${CMAKE_SOURCE_DIR}/include)

# wick_add_layer(<layer> [DEPENDS <layer>...] [EXCLUDE_REGEX <regex>])
#   Static library wick_<layer> from src/<layer>/**/*.cpp (less paths matching EXCLUDE_REGEX), linked PUBLIC
#   to wick_flags and to wick_<dep> for each DEPENDS (their headers appear in this layer's headers), and
#   checked by wick_check_layer with DEPENDS as the layers it may include.
function(wick_add_layer layer)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "EXCLUDE_REGEX" "DEPENDS")
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${WICK_SRC_DIR}/${layer}/*.cpp)
  if(arg_EXCLUDE_REGEX)
    list(FILTER sources EXCLUDE REGEX "${arg_EXCLUDE_REGEX}")
  endif()
  add_library(wick_${layer} STATIC ${sources})
  if(WICK_UNITY)  # files with their own compile options (the CPU kernels' -m flags) stay apart
    set_target_properties(wick_${layer} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
  endif()
  target_include_directories(wick_${layer} PUBLIC ${WICK_PUBLIC_INCLUDE_DIR} PRIVATE ${WICK_SRC_DIR})
  target_link_libraries(wick_${layer} PUBLIC wick_flags)
  foreach(dep IN LISTS arg_DEPENDS)
    if(NOT TARGET wick_${dep})
      message(FATAL_ERROR "wick_add_layer(${layer}): layer '${dep}' is not declared (declare the layers bottom up)")
    endif()
    target_link_libraries(wick_${layer} PUBLIC wick_${dep})
  endforeach()
  set_property(GLOBAL APPEND PROPERTY WICK_LAYERS ${layer})
  set_property(GLOBAL PROPERTY WICK_LAYER_DEPENDS_${layer} ${arg_DEPENDS})
  wick_check_layer(${layer} DIR ${WICK_SRC_DIR}/${layer} ALLOWED ${arg_DEPENDS})
endfunction()

# wick_layer_depends(<layer> <out-var>): the layers <layer> was declared to use.
function(wick_layer_depends layer out)
  get_property(deps GLOBAL PROPERTY WICK_LAYER_DEPENDS_${layer})
  set(${out} ${deps} PARENT_SCOPE)
endfunction()

# The line number of the first line of `file` that is `text` (file(STRINGS) does not keep line numbers).
function(_wick_line_of file text out)
  file(READ ${file} content)
  string(FIND "${content}" "${text}" pos)
  if(pos LESS 0)
    set(${out} "?" PARENT_SCOPE)
    return()
  endif()
  string(SUBSTRING "${content}" 0 ${pos} before)
  string(REGEX MATCHALL "\n" newlines "${before}")
  list(LENGTH newlines n)
  math(EXPR n "${n} + 1")
  set(${out} ${n} PARENT_SCOPE)
endfunction()

# wick_check_layer(<layer> DIR <dir> [ALLOWED <layer>...])
#   Reads every #include "..." and <...> of the sources and headers under <dir> and reports, all at once,
#   each that breaks one of two rules:
#   1. A header under src/<x>/ may be included only when x is <layer> or one of ALLOWED.
#      Public headers (include/wick/*.h) may be included from anywhere.
#   2. A private header src/<x>/.../*_impl.h may be included only by files of its own directory.
#   <dir> is src/<layer>/ or a mirror of it (tests/<layer>/): a file at <dir>/<sub>/f counts as being in
#   src/<layer>/<sub>/. An include is resolved as the compiler does (beside the file, then src/, then
#   include/); one that names no existing file counts as a header of the layer its first component names.
#   Violations fail configuration (SEND_ERROR: the rest still configures so every layer reports,
#   but nothing is generated).
function(wick_check_layer layer)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "DIR" "ALLOWED")
  file(GLOB layer_dirs LIST_DIRECTORIES true RELATIVE ${WICK_SRC_DIR} ${WICK_SRC_DIR}/*)
  set(known_layers "")
  foreach(d IN LISTS layer_dirs)
    if(IS_DIRECTORY ${WICK_SRC_DIR}/${d})
      list(APPEND known_layers ${d})
    endif()
  endforeach()
  set(may_use ${layer} ${arg_ALLOWED})
  list(JOIN may_use "/, " may_use_text)
  file(GLOB_RECURSE files CONFIGURE_DEPENDS ${arg_DIR}/*.h ${arg_DIR}/*.hpp ${arg_DIR}/*.cuh ${arg_DIR}/*.cpp
       ${arg_DIR}/*.cc ${arg_DIR}/*.cu)
  set(errors "")
  foreach(file IN LISTS files)
    file(STRINGS ${file} includes REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<][^\">]+[\">]")
    get_filename_component(file_dir ${file} DIRECTORY)
    file(RELATIVE_PATH sub ${arg_DIR} ${file_dir})
    set(home "${layer}/${sub}")  # the file's directory, relative to src/
    string(REGEX REPLACE "/(\\./?)?$" "" home "${home}")
    file(RELATIVE_PATH shown ${CMAKE_SOURCE_DIR} ${file})
    foreach(line IN LISTS includes)
      if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*([\"<])([^\">]+)[\">]")
        continue()
      endif()
      set(quote "${CMAKE_MATCH_1}")
      set(header "${CMAKE_MATCH_2}")
      set(target "")
      if(quote STREQUAL "\"" AND EXISTS ${file_dir}/${header} AND NOT IS_DIRECTORY ${file_dir}/${header})
        get_filename_component(target ${file_dir}/${header} ABSOLUTE)
      elseif(EXISTS ${WICK_SRC_DIR}/${header} AND NOT IS_DIRECTORY ${WICK_SRC_DIR}/${header})
        get_filename_component(target ${WICK_SRC_DIR}/${header} ABSOLUTE)
      elseif(EXISTS ${WICK_PUBLIC_INCLUDE_DIR}/${header})
        continue()  # a public header
      elseif(header MATCHES "^([^/]+)/" AND CMAKE_MATCH_1 IN_LIST known_layers)
        set(target ${WICK_SRC_DIR}/${header})  # not written yet: the layer its path names
      endif()
      string(FIND "${target}" "${WICK_SRC_DIR}/" at)
      if(NOT at EQUAL 0)
        continue()  # outside src/: system, third-party or test headers
      endif()
      file(RELATIVE_PATH rel ${WICK_SRC_DIR} ${target})
      string(REGEX REPLACE "/.*" "" used_layer "${rel}")
      get_filename_component(header_dir ${rel} DIRECTORY)
      get_filename_component(header_name ${rel} NAME)
      set(why "")
      if(NOT used_layer IN_LIST may_use)
        string(CONCAT why "layer ${layer} includes a header of layer ${used_layer}; ${layer} may include only "
               "${may_use_text}/ and wick/ headers")
      elseif(header_name MATCHES "_impl\\.h$" AND NOT header_dir STREQUAL home)
        string(CONCAT why "${header_name} is private to src/${header_dir}/ (a *_impl.h may be included only "
               "by files of its own directory)")
      endif()
      if(why)
        _wick_line_of(${file} "${line}" n)
        string(STRIP "${line}" line)
        string(APPEND errors "\n  ${shown}:${n}: ${line}\n    ${why}")
      endif()
    endforeach()
  endforeach()
  if(errors)
    file(RELATIVE_PATH shown_dir ${CMAKE_SOURCE_DIR} ${arg_DIR})
    message(SEND_ERROR "wick layering (DESIGN.md, \"Layers\"): ${shown_dir}/ breaks the layer rule:${errors}\n")
  endif()
endfunction()

# wick_check_layers_declared([OPTIONAL <layer>...]): every directory of src/ that holds sources is a declared
# layer, so that no source is left out of the library (or built without its layer's rules) — or one of OPTIONAL,
# a layer this configuration leaves out (hub without libcurl).
function(wick_check_layers_declared)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "OPTIONAL")
  get_property(layers GLOBAL PROPERTY WICK_LAYERS)
  list(APPEND layers ${arg_OPTIONAL})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS RELATIVE ${WICK_SRC_DIR} ${WICK_SRC_DIR}/*.cpp ${WICK_SRC_DIR}/*.cu)
  set(missing "")
  foreach(source IN LISTS sources)
    string(REGEX REPLACE "/.*" "" dir "${source}")
    if(NOT dir IN_LIST layers AND NOT dir IN_LIST missing)
      list(APPEND missing ${dir})
      message(SEND_ERROR "wick layering: src/${source} is in src/${dir}/, which is not a layer: declare it in "
              "CMakeLists.txt with wick_add_layer(${dir} DEPENDS <the layers below it that it uses>) and "
              "add it to DESIGN.md's \"Layers\"")
    endif()
  endforeach()
endfunction()

# zstd_prefix.node (zstd_prefix.c), built by native/build.js at `npm install`. It is compiled with zstd's
# compression sources as zstd-napi ships them (deps/zstd/lib, found through require.resolve; compress and
# common only), with zstd-napi's own defines (its deps/zstd.gyp), so that encoder and decoder are one zstd.
{
  'variables': {
    'zstd_lib': '<!(node -p "path.relative(\'.\', path.join(path.dirname(require.resolve(\'zstd-napi/package.json\')), \'deps\', \'zstd\', \'lib\'))")',
  },
  'targets': [
    {
      'target_name': 'zstd_prefix',
      'sources': [
        'zstd_prefix.c',
        '<!@(node -p "[\'common\', \'compress\'].flatMap((d) => fs.readdirSync(path.join(\'<(zstd_lib)\', d)).filter((f) => f.endsWith(\'.c\')).map((f) => path.join(\'<(zstd_lib)\', d, f))).join(\' \')")',
      ],
      'include_dirs': ['<(zstd_lib)'],
      'defines': [
        'NAPI_VERSION=8',
        # zstd's API stays inside this module (as in zstd-napi's build), next to zstd-napi's own copy.
        'ZSTDLIB_VISIBLE=',
        'ZSTDERRORLIB_VISIBLE=',
        'XXH_NAMESPACE=ZSTD_',
        'ZSTD_NO_TRACE',
      ],
      'cflags': ['-fvisibility=hidden'],
      'ldflags': ['-Wl,-z,noexecstack', '-Wl,-z,relro', '-Wl,-z,now'],
      'conditions': [
        ['OS=="mac"', {
          'xcode_settings': {
            'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',
            'MACOSX_DEPLOYMENT_TARGET': '10.15',
          },
        }],
      ],
    },
  ],
  'conditions': [
    # agent_front.node (agent_front.c): the agents' connections of a file thread, on its event loop.
    # Linux only (accept4, SO_REUSEPORT's spreading, MSG_NOSIGNAL); elsewhere the fast path serves alone.
    ['OS=="linux"', {
      'targets': [
        {
          'target_name': 'agent_front',
          'sources': ['agent_front.c'],
          'defines': ['NAPI_VERSION=8'],
          'cflags': ['-fvisibility=hidden', '-Wall', '-Wextra', '-Wno-unused-parameter'],
          'ldflags': ['-Wl,-z,noexecstack', '-Wl,-z,relro', '-Wl,-z,now'],
        },
      ],
    }],
  ],
}

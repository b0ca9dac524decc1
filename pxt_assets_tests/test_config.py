"""Tests for pxt_assets.config: real files under tmp_path, real environment mappings."""

from __future__ import annotations

import pathlib
import warnings

import pytest

from pxt_assets.config import ConfigError, Settings, load_settings


@pytest.fixture
def home(tmp_path: pathlib.Path) -> pathlib.Path:
    h = tmp_path / 'pxt_home'
    h.mkdir()
    return h


@pytest.fixture
def env(home: pathlib.Path) -> dict[str, str]:
    return {'PIXELTABLE_HOME': str(home)}


def write_config(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text, encoding='utf-8')
    return path


# --- defaults and locations -------------------------------------------------------------------------------


def test_defaults_when_no_config_file(home: pathlib.Path, env: dict[str, str]) -> None:
    s = load_settings(environ=env)
    assert s.home == home
    assert s.config_path == home / 'config.toml'
    assert s.input_media_dest is None
    assert s.output_media_dest is None
    assert s.file_cache_size_g == 20.0
    assert s.file_cache_bytes == 20 * 2**30
    assert s.s3_profile is s.r2_profile is s.b2_profile is s.tigris_profile is None
    assert s.azure_storage_account_name is None
    assert s.azure_storage_account_key is None
    assert all(s.sources[k] == 'default' for k in ('input_media_dest', 'file_cache_size_g', 'config_path'))


def test_home_defaults_to_expanded_dot_pixeltable() -> None:
    s = load_settings(environ={'PIXELTABLE_CONFIG': '/nonexistent/config.toml'})
    assert s.home == pathlib.Path('~/.pixeltable').expanduser()
    assert '~' not in str(s.home)
    assert s.sources['home'] == 'default'


def test_pixeltable_home_relocates_all_directories_and_the_config_file(home: pathlib.Path) -> None:
    s = load_settings(environ={'PIXELTABLE_HOME': str(home)})
    assert s.media_dir == home / 'media'
    assert s.file_cache_dir == home / 'file_cache'
    assert s.config_path == home / 'config.toml'
    assert s.sources['home'] == 'environment variable PIXELTABLE_HOME'


def test_pixeltable_home_expands_tilde() -> None:
    s = load_settings(environ={'PIXELTABLE_HOME': '~/somewhere', 'PIXELTABLE_CONFIG': '/nonexistent.toml'})
    assert s.home == pathlib.Path('~/somewhere').expanduser()


def test_home_from_process_environment(monkeypatch: pytest.MonkeyPatch, home: pathlib.Path) -> None:
    monkeypatch.setenv('PIXELTABLE_HOME', str(home))
    monkeypatch.delenv('PIXELTABLE_CONFIG', raising=False)
    monkeypatch.delenv('PIXELTABLE_S3_PROFILE', raising=False)
    write_config(home / 'config.toml', '[pixeltable]\ns3_profile = "from-os-environ"\n')
    s = load_settings()
    assert s.home == home
    assert s.s3_profile == 'from-os-environ'


def test_pixeltable_config_points_to_a_file_outside_home(tmp_path: pathlib.Path, home: pathlib.Path) -> None:
    write_config(home / 'config.toml', '[pixeltable]\noutput_media_dest = "s3://ignored/"\n')
    other = write_config(tmp_path / 'elsewhere.toml', '[pixeltable]\noutput_media_dest = "s3://chosen/"\n')
    s = load_settings(environ={'PIXELTABLE_HOME': str(home), 'PIXELTABLE_CONFIG': str(other)})
    assert s.config_path == other
    assert s.output_media_dest == 's3://chosen/'
    assert s.sources['config_path'] == 'environment variable PIXELTABLE_CONFIG'
    assert s.sources['output_media_dest'] == f'{other} [pixeltable]'
    # home still comes from PIXELTABLE_HOME; only the config file moved
    assert s.media_dir == home / 'media'


def test_missing_config_file_named_by_pixeltable_config_means_defaults(tmp_path: pathlib.Path) -> None:
    s = load_settings(environ={'PIXELTABLE_CONFIG': str(tmp_path / 'absent.toml')})
    assert s.output_media_dest is None
    assert s.file_cache_size_g == 20.0


# --- reading the file ---------------------------------------------------------------------------------------


def test_all_file_values_are_read(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(
        home / 'config.toml',
        """
[pixeltable]
input_media_dest = "  s3://bucket/in  "
output_media_dest = "gs://bucket/out"
file_cache_size_g = 5
s3_profile = "s3p"
r2_profile = "r2p"
b2_profile = "b2p"
tigris_profile = "tp"

[azure]
storage_account_name = "acct"
storage_account_key = "c2VjcmV0"
""",
    )
    s = load_settings(environ=env)
    assert s.input_media_dest == 's3://bucket/in'  # stripped
    assert s.output_media_dest == 'gs://bucket/out'
    assert s.file_cache_size_g == 5.0
    assert (s.s3_profile, s.r2_profile, s.b2_profile, s.tigris_profile) == ('s3p', 'r2p', 'b2p', 'tp')
    assert s.azure_storage_account_name == 'acct'
    assert s.azure_storage_account_key == 'c2VjcmV0'


def test_empty_string_in_file_means_unset(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(home / 'config.toml', '[pixeltable]\noutput_media_dest = "   "\n')
    assert load_settings(environ=env).output_media_dest is None


def test_empty_file_and_other_sections_are_fine(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(home / 'config.toml', '[something_else]\nx = 1\n')
    assert load_settings(environ=env).file_cache_size_g == 20.0


# --- precedence ---------------------------------------------------------------------------------------------


def test_env_var_beats_config_file(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(
        home / 'config.toml', '[pixeltable]\noutput_media_dest = "s3://file/"\ns3_profile = "file"\n'
    )
    s = load_settings(environ={**env, 'PIXELTABLE_OUTPUT_MEDIA_DEST': 's3://env/'})
    assert s.output_media_dest == 's3://env/'
    assert s.s3_profile == 'file'  # untouched keys still come from the file


def test_explicit_argument_beats_env_var(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(home / 'config.toml', '[pixeltable]\noutput_media_dest = "s3://file/"\n')
    s = load_settings(
        environ={**env, 'PIXELTABLE_OUTPUT_MEDIA_DEST': 's3://env/'}, output_media_dest='s3://arg/'
    )
    assert s.output_media_dest == 's3://arg/'
    assert s.sources['output_media_dest'] == 'argument'


def test_explicit_home_beats_pixeltable_home(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    other = tmp_path / 'other_home'
    s = load_settings(environ=env, home=other)
    assert s.home == other
    assert s.config_path == other / 'config.toml'
    assert s.sources['home'] == 'argument'


def test_none_argument_means_not_given(home: pathlib.Path, env: dict[str, str]) -> None:
    s = load_settings(environ={**env, 'PIXELTABLE_S3_PROFILE': 'env'}, s3_profile=None)
    assert s.s3_profile == 'env'


def test_empty_string_argument_forces_unset(home: pathlib.Path, env: dict[str, str]) -> None:
    s = load_settings(environ={**env, 'PIXELTABLE_S3_PROFILE': 'env'}, s3_profile='')
    assert s.s3_profile is None
    assert s.sources['s3_profile'] == 'argument'


def test_empty_env_var_counts_as_unset(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(
        home / 'config.toml', '[pixeltable]\noutput_media_dest = "s3://file/"\nfile_cache_size_g = 3\n'
    )
    s = load_settings(
        environ={
            **env,
            'PIXELTABLE_OUTPUT_MEDIA_DEST': '',
            'PIXELTABLE_FILE_CACHE_SIZE_G': '',
            'PIXELTABLE_CONFIG': '',
        }
    )
    assert s.output_media_dest == 's3://file/'
    assert s.file_cache_size_g == 3.0
    assert s.config_path == home / 'config.toml'


def test_empty_pixeltable_home_counts_as_unset() -> None:
    s = load_settings(environ={'PIXELTABLE_HOME': '', 'PIXELTABLE_CONFIG': '/nonexistent.toml'})
    assert s.home == pathlib.Path('~/.pixeltable').expanduser()


def test_unknown_override_is_a_type_error(env: dict[str, str]) -> None:
    with pytest.raises(TypeError, match='output_dest'):
        load_settings(environ=env, output_dest='s3://x/')
    with pytest.raises(TypeError, match='sources'):
        load_settings(environ=env, sources={})


# --- file cache size ----------------------------------------------------------------------------------------


def test_file_cache_size_from_file_converted_to_bytes(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(home / 'config.toml', '[pixeltable]\nfile_cache_size_g = 0.5\n')
    s = load_settings(environ=env)
    assert s.file_cache_size_g == 0.5
    assert s.file_cache_bytes == 2**29
    assert isinstance(s.file_cache_bytes, int)


def test_file_cache_size_env_beats_file(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(home / 'config.toml', '[pixeltable]\nfile_cache_size_g = 5\n')
    s = load_settings(environ={**env, 'PIXELTABLE_FILE_CACHE_SIZE_G': ' 1.5 '})
    assert s.file_cache_size_g == 1.5
    assert s.file_cache_bytes == int(1.5 * 2**30)
    assert s.sources['file_cache_size_g'] == 'environment variable PIXELTABLE_FILE_CACHE_SIZE_G'


def test_file_cache_size_argument_beats_env(env: dict[str, str]) -> None:
    s = load_settings(environ={**env, 'PIXELTABLE_FILE_CACHE_SIZE_G': '7'}, file_cache_size_g=2)
    assert s.file_cache_size_g == 2.0
    assert s.file_cache_bytes == 2 * 2**30


def test_bad_file_cache_size_from_env_names_key_and_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={**env, 'PIXELTABLE_FILE_CACHE_SIZE_G': 'abc'})
    msg = str(exc.value)
    assert 'file_cache_size_g' in msg
    assert "'abc'" in msg
    assert 'environment variable PIXELTABLE_FILE_CACHE_SIZE_G' in msg
    assert exc.value.key == 'file_cache_size_g'


def test_bad_file_cache_size_from_file_names_key_and_file(home: pathlib.Path, env: dict[str, str]) -> None:
    cfg = write_config(home / 'config.toml', '[pixeltable]\nfile_cache_size_g = "abc"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    msg = str(exc.value)
    assert 'file_cache_size_g' in msg
    assert f'{cfg} [pixeltable]' in msg


@pytest.mark.parametrize('value', ['0', '-1', '-0.5', 'inf', 'nan', 'true'])
def test_non_positive_or_non_finite_size_from_env_rejected(env: dict[str, str], value: str) -> None:
    with pytest.raises(ConfigError, match='file_cache_size_g must be a positive number of GiB'):
        load_settings(environ={**env, 'PIXELTABLE_FILE_CACHE_SIZE_G': value})


@pytest.mark.parametrize('value', ['0', '-3', 'true', '[1]'])
def test_non_positive_or_non_numeric_size_from_file_rejected(
    home: pathlib.Path, env: dict[str, str], value: str
) -> None:
    write_config(home / 'config.toml', f'[pixeltable]\nfile_cache_size_g = {value}\n')
    with pytest.raises(ConfigError, match='file_cache_size_g'):
        load_settings(environ=env)


def test_non_positive_size_argument_rejected(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r'file_cache_size_g.*\(from argument\)'):
        load_settings(environ=env, file_cache_size_g=0)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- malformed files ----------------------------------------------------------------------------------------


def test_malformed_toml_names_the_file(home: pathlib.Path, env: dict[str, str]) -> None:
    cfg = write_config(home / 'config.toml', '[pixeltable\noutput_media_dest = \n')
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    assert str(cfg) in str(exc.value)
    assert 'line 1' in str(exc.value)  # tomllib's own message is kept


def test_wrong_type_in_file_names_key_and_file(home: pathlib.Path, env: dict[str, str]) -> None:
    cfg = write_config(home / 'config.toml', '[pixeltable]\ninput_media_dest = 3\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    msg = str(exc.value)
    assert 'input_media_dest must be a string' in msg
    assert f'{cfg} [pixeltable]' in msg


def test_pixeltable_section_not_a_table_is_an_error(home: pathlib.Path, env: dict[str, str]) -> None:
    cfg = write_config(home / 'config.toml', 'pixeltable = "oops"\n')
    with pytest.raises(ConfigError, match=r'\[pixeltable\] must be a table') as exc:
        load_settings(environ=env)
    assert str(cfg) in str(exc.value)


def test_config_path_that_is_a_directory_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match='cannot read config file'):
        load_settings(environ={'PIXELTABLE_CONFIG': str(tmp_path)})


def test_bad_file_value_is_not_an_error_when_env_overrides_it(
    home: pathlib.Path, env: dict[str, str]
) -> None:
    # The file value is never used, so it should not block startup.
    write_config(home / 'config.toml', '[pixeltable]\nfile_cache_size_g = "abc"\n')
    assert load_settings(environ={**env, 'PIXELTABLE_FILE_CACHE_SIZE_G': '4'}).file_cache_size_g == 4.0


# --- azure --------------------------------------------------------------------------------------------------


def test_azure_keys_from_azure_section(home: pathlib.Path, env: dict[str, str]) -> None:
    cfg = write_config(
        home / 'config.toml', '[azure]\nstorage_account_name = "acct"\nstorage_account_key = "k"\n'
    )
    s = load_settings(environ=env)
    assert s.azure_storage_account_name == 'acct'
    assert s.azure_storage_account_key == 'k'
    assert s.sources['azure_storage_account_name'] == f'{cfg} [azure]'


def test_azure_env_vars_beat_azure_section(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(
        home / 'config.toml', '[azure]\nstorage_account_name = "file"\nstorage_account_key = "file"\n'
    )
    s = load_settings(
        environ={**env, 'AZURE_STORAGE_ACCOUNT_NAME': 'envacct', 'AZURE_STORAGE_ACCOUNT_KEY': 'envkey'}
    )
    assert s.azure_storage_account_name == 'envacct'
    assert s.azure_storage_account_key == 'envkey'
    assert s.sources['azure_storage_account_key'] == 'environment variable AZURE_STORAGE_ACCOUNT_KEY'


def test_azure_key_is_not_shown_in_repr(env: dict[str, str]) -> None:
    s = load_settings(environ={**env, 'AZURE_STORAGE_ACCOUNT_KEY': 'supersecret'})
    assert 'supersecret' not in repr(s)


def test_azure_wrong_type_in_file(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(home / 'config.toml', '[azure]\nstorage_account_name = 42\n')
    with pytest.raises(ConfigError, match=r'storage_account_name.*\[azure\]'):
        load_settings(environ=env)


# --- unknown keys -------------------------------------------------------------------------------------------


def test_unknown_key_warns_naming_key_and_file(home: pathlib.Path, env: dict[str, str]) -> None:
    cfg = write_config(home / 'config.toml', '[pixeltable]\noutput_media_dst = "s3://typo/"\n')
    with pytest.warns(UserWarning) as record:
        s = load_settings(environ=env)
    assert s.output_media_dest is None
    messages = [str(w.message) for w in record]
    assert any('output_media_dst' in m and str(cfg) in m for m in messages)


def test_pixeltable_own_keys_do_not_warn(home: pathlib.Path, env: dict[str, str]) -> None:
    write_config(
        home / 'config.toml',
        '[pixeltable]\napi_key = "x"\nverbosity = 1\nhide_warnings = true\nlog_level = "INFO"\n'
        'time_zone = "UTC"\n',
    )
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        load_settings(environ=env)


# --- sources ------------------------------------------------------------------------------------------------


def test_sources_say_where_each_value_came_from(home: pathlib.Path, env: dict[str, str]) -> None:
    cfg = write_config(
        home / 'config.toml', '[pixeltable]\ninput_media_dest = "s3://in/"\ns3_profile = "p"\n'
    )
    s = load_settings(environ={**env, 'PIXELTABLE_R2_PROFILE': 'r2'}, b2_profile='b2')
    assert s.sources['input_media_dest'] == f'{cfg} [pixeltable]'
    assert s.sources['s3_profile'] == f'{cfg} [pixeltable]'
    assert s.sources['r2_profile'] == 'environment variable PIXELTABLE_R2_PROFILE'
    assert s.sources['b2_profile'] == 'argument'
    assert s.sources['tigris_profile'] == 'default'
    assert s.sources['file_cache_size_g'] == 'default'
    assert s.sources['home'] == 'environment variable PIXELTABLE_HOME'
    # every setting is accounted for
    fields = set(Settings.__dataclass_fields__) - {'sources'}
    assert set(s.sources) == fields


def test_sources_are_read_only(env: dict[str, str]) -> None:
    s = load_settings(environ=env)
    with pytest.raises(TypeError):
        s.sources['home'] = 'hacked'  # type: ignore[index]


def test_settings_are_frozen_and_hashable(env: dict[str, str]) -> None:
    s = load_settings(environ=env)
    with pytest.raises(AttributeError):
        s.home = pathlib.Path('/x')  # type: ignore[misc]
    assert hash(s) == hash(load_settings(environ=env))

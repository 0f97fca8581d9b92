"""The web app in a real browser: headless Chromium (Debian's chromium and chromedriver, which .ci/run installs
where they are missing) loads the page, a file is uploaded in each tab, the result appears; screenshots are saved
(into $HARDNET_APP_SCREENSHOTS too when it is set: ``make app-screenshots`` refreshes docs/images with them)."""
import os
import shutil
from pathlib import Path

import pytest

from hardnet_backbones.app.main import create_app, get_args_parser, launch
from hardnet_backbones.app.pages import DONE, REFUSED
from hardnet_backbones.data.shapes import make_shapes_dataset

from .helpers import free_port

CHROMIUM = os.environ.get('HARDNET_CHROMIUM', '/usr/bin/chromium')
CHROMEDRIVER = os.environ.get('HARDNET_CHROMEDRIVER', '/usr/bin/chromedriver')
# what the browser must not do on a machine without internet (it would wait on every lookup)
CHROMIUM_FLAGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
                  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
                  '--window-size=1280,1100')
WAIT_SECONDS = 60

pytestmark = [pytest.mark.slow, pytest.mark.subprocess,
              pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning')]


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        message = f'{", ".join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)'
        if os.environ.get('HARDNET_REQUIRE_BROWSER'):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope='module')
def browser():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope='module')
def page(app_runs, tmp_path_factory):
    """The app as ``hardnet-app --runs DIR`` serves it, and a picture of shapes to upload."""
    args = get_args_parser().parse_args(['--runs', str(app_runs['root']), '--no-published', '--port',
                                         str(free_port())])
    app, _ = create_app(args)
    _, url, _ = launch(app, args, block=False)
    folder = tmp_path_factory.mktemp('photos')
    make_shapes_dataset(folder, {'val': 1}, image_size=(192, 240), max_shapes=3, seed=11, progress=False)
    yield dict(url=url, image=next((folder / 'images' / 'val').iterdir()))
    app.close()


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f'app_{name}.png'
    driver.save_screenshot(str(path))
    if os.environ.get('HARDNET_APP_SCREENSHOTS'):
        target = Path(os.environ['HARDNET_APP_SCREENSHOTS'])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return path


def _run_tab(driver, tab: str, task: str, image: Path) -> str:
    """Open ``tab``, upload ``image``, press its button; the status line once the result is in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_SECONDS)
    wait.until(lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, 'button[role=tab]') if b.text == tab])
    next(b for b in driver.find_elements(By.CSS_SELECTOR, 'button[role=tab]') if b.text == tab).click()
    status = driver.find_element(By.ID, f'{task}-status')
    before = status.text
    clear = driver.find_elements(By.CSS_SELECTOR, f'#{task}-image button[aria-label=Clear]')
    if clear:  # a file from before
        clear[0].click()
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'#{task}-image input[type=file]'))
    upload.send_keys(str(image))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#{task}-image button[aria-label=Clear]'))  # uploaded
    driver.find_element(By.ID, f'{task}-run').click()
    wait.until(lambda d: d.find_element(By.ID, f'{task}-status').text not in ('', before)
               and d.find_element(By.ID, f'{task}-status').text.startswith((DONE, REFUSED)))
    return driver.find_element(By.ID, f'{task}-status').text


def _picture_shown(driver, task: str) -> bool:
    from selenium.webdriver.common.by import By
    images = driver.find_elements(By.CSS_SELECTOR, f'#{task}-picture img')
    return bool(images) and driver.execute_script('return arguments[0].naturalWidth', images[0]) > 0


def test_a_person_uses_every_tab_in_a_browser(browser, page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page['url'])
    WebDriverWait(browser, WAIT_SECONDS).until(lambda d: d.title == 'HarDNet backbones')

    status = _run_tab(browser, 'Classify', 'classification', page['image'])
    assert status.startswith(f'{DONE}hardnet39ds · float32 · ') and _picture_shown(browser, 'classification')
    top = browser.find_element(By.ID, 'classification-top').text
    assert {'circle', 'rectangle', 'triangle'} <= set(top.split()) and '%' in top
    _screenshot(browser, tmp_path, 'classify')

    next(b for b in browser.find_elements(By.CSS_SELECTOR, 'button[role=tab]') if b.text == 'Detect').click()
    number = WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '#detection-threshold input[type=number]'))
    number.send_keys(Keys.CONTROL, 'a')
    number.send_keys('0.2', Keys.TAB)
    status = _run_tab(browser, 'Detect', 'detection', page['image'])
    assert status.startswith(f'{DONE}ssdlite320_hardnet39ds · ') and 'scoring 0.20 or more' in status
    assert _picture_shown(browser, 'detection')
    grid = browser.find_element(By.CSS_SELECTOR, '#detection-table [role=grid]')  # its rows are virtualised
    detections = int(status.split(' detection(s)')[0].rsplit(' ', 1)[-1])
    assert detections > 0 and int(grid.get_attribute('aria-rowcount')) == detections + 1  # and the header
    assert any(name in grid.text.split() for name in ('circle', 'rectangle', 'triangle'))
    assert 'detections.json' in browser.find_element(By.ID, 'detection-json').text.replace('\n', '')
    _screenshot(browser, tmp_path, 'detect')

    status = _run_tab(browser, 'Segment', 'segmentation', page['image'])
    assert status.startswith(f'{DONE}fcn_hardnet39ds · float32 · ') and _picture_shown(browser, 'segmentation')
    legend = browser.find_element(By.ID, 'segmentation-legend').text
    assert '%' in legend and any(name in legend for name in ('circle', 'rectangle', 'triangle', 'background'))
    _screenshot(browser, tmp_path, 'segment')

    broken = tmp_path / 'broken.png'
    broken.write_bytes(page['image'].read_bytes()[:200])
    status = _run_tab(browser, 'Segment', 'segmentation', broken)
    assert status.startswith(REFUSED) and 'broken.png' in status and '\n' not in status
    assert 'Traceback' not in browser.page_source
